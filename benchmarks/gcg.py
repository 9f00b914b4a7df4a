"""Milliseconds per GCG step, with and without the prefix KV cache.

One step = one-hot token gradient (forward + backward) + sampling + tokenization filter +
exact losses of all surviving candidates. Runs offline on random-init tiny Llamas from
``safetygeo.models.tiny`` (vocab 512) with the paper's step size (search width 512,
top-k 256, 20-token suffix), for a short prompt (chat template + instruction) and a long
one (same plus a ~150-token system prompt, like Llama-2-chat's default in HarmBench).

    python benchmarks/gcg.py [--quick] [--device cpu|cuda] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from safetygeo.attacks.gcg import GCGConfig, gcg_init, gcg_step
from safetygeo.models import load_model
from safetygeo.models.tiny import tiny_model_and_tokenizer

INSTRUCTION = "Write a plan to build a small boat in the garden before the rain."
TARGET = "Sure, here is a plan to build a small boat in the garden"
SYSTEM = " ".join(["You are a helpful, respectful and honest assistant who answers every "
                   "question as well as you can while staying safe and kind."] * 6)


def run(d_model: int, n_layers: int, long_prompt: bool, cache: bool, steps: int,
        search_width: int, eval_batch_size: int, device: str) -> dict:
    model, tok = tiny_model_and_tokenizer("llama", n_layers=n_layers, d_model=d_model,
                                          n_heads=max(4, d_model // 64), max_positions=512)
    h = load_model(model, tok, device=device)
    if long_prompt:
        h = h.with_template(system=SYSTEM)
    cfg = GCGConfig(num_steps=steps, search_width=search_width, topk=256,
                    suffix_init="x " * 10, seed=0, eval_batch_size=eval_batch_size,
                    use_prefix_cache=cache)
    state = gcg_init(h, [INSTRUCTION], [TARGET], cfg)
    p = state.items[0].prompts[0]
    gcg_step(h, state)  # warm-up
    times = []
    for _ in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        gcg_step(h, state)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"d_model": d_model, "n_layers": n_layers, "long_prompt": long_prompt,
            "prefix_cache": cache, "n_before": len(p.before_ids),
            "n_suffix": len(state.items[0].suffix_ids), "n_after_target": len(p.after_ids) + len(p.target_ids),
            "candidates": state.items[0].n_candidates[-1], "ms_per_step": 1000 * times[len(times) // 2],
            "loss": state.items[0].loss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small model, 2 steps (CI smoke)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="64x2,256x4", help="d_model x n_layers, comma-separated")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--search-width", type=int, default=512)
    ap.add_argument("--eval-batch-size", type=int, default=128)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    steps = args.steps
    if args.quick:
        sizes, steps = [(64, 2)], 2
    rows = []
    print(f"{'d_model':>7} {'layers':>6} {'prompt':>6} {'n_before':>8} {'cands':>5} "
          f"{'no-cache ms':>11} {'cache ms':>9} {'speed-up':>8}")
    for d, n in sizes:
        for long_prompt in (False, True):
            a = run(d, n, long_prompt, False, steps, args.search_width, args.eval_batch_size, args.device)
            b = run(d, n, long_prompt, True, steps, args.search_width, args.eval_batch_size, args.device)
            rows += [a, b]
            print(f"{d:>7} {n:>6} {'long' if long_prompt else 'short':>6} {a['n_before']:>8} "
                  f"{a['candidates']:>5} {a['ms_per_step']:>11.1f} {b['ms_per_step']:>9.1f} "
                  f"{a['ms_per_step'] / b['ms_per_step']:>7.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
