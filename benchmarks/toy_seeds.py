"""How reproducible are the toy world's numbers? Build base + anchor from scratch for several
seeds (and, for one seed, several torch thread counts), run the demo on each, and print the
headline numbers with their range — the table the README quotes.

Each build goes into its own empty cache folder (what a fresh install does). Also compares
the anchor's weights across thread counts for the same seed (bitwise equal or not).

    python benchmarks/toy_seeds.py [--seeds 0,1,2,3,4] [--threads 2] [--thread-check 1,2]
                                   [--quick] [--cache DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from typing import Any

import torch


def weights_sha(handle: Any) -> str:
    h = hashlib.sha256()
    for name, p in sorted(handle.model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def one(seed: int, threads: int, quick: bool, cache_dir: str | None = None) -> dict[str, Any]:
    import contextlib

    from safetygeo.toy.demo import DemoSettings, run_demo
    from safetygeo.toy.zoo import ensure_toy, load_toy

    torch.set_num_threads(threads)
    fresh = tempfile.TemporaryDirectory() if cache_dir is None else contextlib.nullcontext(cache_dir)
    with fresh as cache, tempfile.TemporaryDirectory() as demo_dir:
        t = time.perf_counter()
        infos = ensure_toy(("anchor",), seed=seed, cache_dir=cache)
        build_s = time.perf_counter() - t
        sha = weights_sha(load_toy("anchor", seed=seed, cache_dir=cache))
        summary = run_demo(demo_dir, seed=seed, cache_dir=cache, progress=False,
                           settings=DemoSettings.quick() if quick else DemoSettings())
    chosen = summary["carrier"]["chosen"]
    gen = summary.get("generation_ablation") or {}
    abl = (summary.get("ablation") or {}).get("d_refusal_harmful") or {}
    beh = summary["behavior"]
    return {
        "seed": seed, "threads": threads, "build_s": round(build_s, 1), "anchor_sha": sha,
        "base_task_acc": infos["base"]["behavior"]["task_accuracy"],
        "anchor_task_acc": infos["anchor"]["behavior"]["task_accuracy"],
        "anchor_refusal_harmful": infos["anchor"]["behavior"]["refusal_harmful"],
        "anchor_refusal_lookalike": infos["anchor"]["behavior"]["refusal_lookalike"],
        "carrier": None if chosen is None else f"{chosen['layer']}:{chosen['position']}",
        "ablation_d_refusal": abl.get("real"),
        "ablation_null_q975_abs": None if not abl else max(abs(abl["null_q025"]), abs(abl["null_q975"])),
        "gen_refusal_base": gen.get("base_rate"), "gen_refusal_ablated": gen.get("real_rate"),
        "demo_behavior": beh,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--thread-check", default="1,2", help="thread counts compared on seed 0")
    ap.add_argument("--quick", action="store_true", help="DemoSettings.quick() statistics")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cache", default=None,
                    help="reuse this toy cache (stages already built there are not rebuilt; "
                         "the thread count they were built with is in their toy.json) instead "
                         "of a fresh one per build")
    args = ap.parse_args()
    rows = [one(int(s), args.threads, args.quick, args.cache) for s in args.seeds.split(",")]
    checks = [int(t) for t in args.thread_check.split(",") if t.strip()]
    extra = [one(int(args.seeds.split(",")[0]), t, args.quick) for t in checks
             if t != args.threads and args.cache is None]
    keys = ["seed", "threads", "build_s", "base_task_acc", "anchor_task_acc",
            "anchor_refusal_harmful", "anchor_refusal_lookalike", "carrier",
            "ablation_d_refusal", "ablation_null_q975_abs", "gen_refusal_base",
            "gen_refusal_ablated", "anchor_sha"]
    print(" | ".join(keys))
    for r in rows + extra:
        print(" | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys))
    for k in ("base_task_acc", "anchor_task_acc", "anchor_refusal_harmful",
              "anchor_refusal_lookalike", "ablation_d_refusal", "gen_refusal_ablated"):
        vals = [r[k] for r in rows if r[k] is not None]
        if vals:
            print(f"{k}: min {min(vals):.3g}  max {max(vals):.3g}  over seeds {args.seeds}")
    same = {r["threads"]: r["anchor_sha"] for r in [rows[0], *extra]}
    print(f"anchor weights by thread count (seed {rows[0]['seed']}): {same} -> "
          f"{'bitwise equal' if len(set(same.values())) == 1 else 'differ'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "thread_check": extra}, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
