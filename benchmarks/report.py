"""Trajectory reports over the toy zoo: first run, no-change rerun, in-process vs Ray.

What it measures (issue 16), on the toy zoo's refusal-SFT (``anchor``), R2D2 and
harmful-SFT (``attacked``) trajectories with ``Protocol.toy()``:

1. **first run** of ``run_report`` into an empty folder (every checkpoint, and each
   trajectory's base, every step, including GCG on the transfer source), then a
   **no-change rerun** into the same folder: seconds of both, and the rerun's counts
   (target: rerun ≤ 5 % of the first run; it must compute nothing);
2. the **per-checkpoint cost by protocol step**: mean seconds per checkpoint of each step
   of the first run (from ``status.csv``), model loading included as ``load``;
3. **in-process vs Ray** (a local Ray instance with ``--workers`` CPUs): the same report of
   ``--ray-trajectories`` from empty folders with each executor — wall seconds, and whether
   the two tables agree (``rtol`` 1e-6);
4. the HTML in headless Chromium (figures rendered, console errors) with a screenshot.

    python benchmarks/report.py [--stride 1] [--threads 1] [--workers 2] [--out DIR] [--json F]
    python benchmarks/report.py --quick    # stride 4, Ray on one trajectory (~5 min)

The toy zoo is built first if absent (``$SAFETYGEO_TOY_DIR``, ~10 min for all stages).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import torch


def _run(paths: list[Path], out: Path, protocol, **kw) -> tuple[float, object]:
    from safetygeo.reports import run_report

    t = time.perf_counter()
    r = run_report(paths, out, protocol, **kw)
    return time.perf_counter() - t, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stride", type=int, default=1, help="every N-th checkpoint")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads in-process (1: fastest for the toy models on a shared "
                         "2-core machine)")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--ray-trajectories", default="attacked,r2d2",
                    help="trajectories of the in-process vs Ray comparison")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--only-ray", action="store_true", help="skip the first run / rerun")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="artifacts/bench-report")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.quick:
        args.stride, args.ray_trajectories = 4, "attacked"
    torch.set_num_threads(args.threads)

    import safetygeo.toy  # noqa: F401  (toy: sets and judge)
    from safetygeo.reports import Protocol
    from safetygeo.toy.zoo import load_toy_trajectory

    names = ("anchor", "r2d2", "attacked")
    paths = {n: Path(load_toy_trajectory(n).path) for n in names}
    proto = Protocol.toy()
    proto = proto.replace(checkpoints=proto.checkpoints.__class__(stride=args.stride))
    out = Path(args.out)
    for sub in (["cmp-local", "cmp-ray"] if args.only_ray else ["report", "cmp-local", "cmp-ray"]):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    res: dict = {"threads": args.threads, "stride": args.stride, "torch": torch.__version__}
    if not args.only_ray:
        first_run(res, paths, names, proto, out)
    if not args.no_ray:
        ray_compare(res, paths, args, proto, out)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


def first_run(res: dict, paths: dict, names: tuple, proto, out: Path) -> None:
    from safetygeo.reports.browser import browser_check, find_chromium

    first_s, first = _run([paths[n] for n in names], out / "report", proto)
    rerun_s, rerun = _run([paths[n] for n in names], out / "report", proto)
    res["first"] = {"seconds": round(first_s, 1), "counts": first.counts,
                    "checkpoints": int(first.table.groupby(["trajectory", "step"]).ngroups)}
    res["rerun"] = {"seconds": round(rerun_s, 2), "counts": rerun.counts,
                    "ratio": round(rerun_s / first_s, 4),
                    "same_table": bool(rerun.table.equals(first.table))}
    st = first.status
    n_ckpt = max(1, st[st.protocol_step == "carriers"].shape[0])
    per = st[st.status.isin(["computed", "loaded"])].groupby("protocol_step").seconds
    res["per_checkpoint_s"] = {k: round(v, 3) for k, v in (per.sum() / n_ckpt).items()}
    res["step_totals_s"] = {k: round(v, 2) for k, v in per.sum().items()}

    if find_chromium() is not None:
        check = browser_check(first.html, screenshot=out / "report.png")
        res["browser"] = {"figures": check.figures, "rendered": check.rendered,
                          "errors": check.errors, "screenshot": str(check.screenshot)}

    t = first.table
    summary = {}
    for traj, g in t[t.metric == "carrier_layer"].groupby("trajectory"):
        summary[traj] = {int(s): (None if pd.isna(v) else int(v)) for s, v in zip(g.step, g.value)}
    res["carrier_layer_by_step"] = summary


def ray_compare(res: dict, paths: dict, args: argparse.Namespace, proto, out: Path) -> None:
    from safetygeo._executor import RayExecutor

    sub = [paths[n] for n in args.ray_trajectories.split(",")]
    local_s, local = _run(sub, out / "cmp-local", proto, html=False)
    t = time.perf_counter()
    ex = RayExecutor(workers=args.workers)
    ex.describe()
    start_s = time.perf_counter() - t
    try:
        ray_s, ray = _run(sub, out / "cmp-ray", proto, html=False, executor=ex)
    finally:
        ex.close()
    a = local.table.drop(columns=["q"]).reset_index(drop=True)
    b = ray.table.drop(columns=["q"]).reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)
        same = True
    except AssertionError:
        same = False
    res["ray"] = {"trajectories": args.ray_trajectories, "workers": args.workers,
                  "in_process_s": round(local_s, 1), "ray_start_s": round(start_s, 1),
                  "ray_s": round(ray_s, 1), "speedup": round(local_s / ray_s, 2),
                  "speedup_with_start": round(local_s / (ray_s + start_s), 2),
                  "same_table": same, "models_loaded": int(local.counts["models_loaded"])}
    try:
        res["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass


if __name__ == "__main__":
    main()
