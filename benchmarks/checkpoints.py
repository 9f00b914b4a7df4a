"""What hashing checkpoints costs (issue #12): SHA-256 of every file in the completeness
marker, written at commit and verified when a checkpoint is loaded or resumed from.

A random-init Llama (default: 8 layers, d_model 768, vocab 16000: ~77M parameters, ~306 MB
of fp32 safetensors) and an Adam-shaped optimizer state (2 × the parameters, like the
trainer's ``optimizer.pt``) are written to a temporary folder; then, median over ``--reps``:

* ``save_pretrained`` (+ tokenizer) and ``torch.save`` of the optimizer state — what the
  trainer spends writing a checkpoint;
* the commit right after a fresh save, as it was (fsync every file) and as it is now
  (``commit_checkpoint``: one read per file that fsyncs and hashes, files on a few
  threads, then marker + rename; and the same pass on one thread) — the difference is the
  cost of hashing while writing;
* ``verify_checkpoint`` as resuming runs it (every file) and as ``load_checkpoint`` runs
  it (the files loading reads: weights, config, tokenizer), page cache warm as right after
  training, against ``load_model`` of that checkpoint (safetensors are memory-mapped, so
  also a load that touches every weight);
* in-memory throughput of sha256 / blake2b / sha1 (why SHA-256: on CPUs with SHA
  extensions it is the fastest of them).

Page cache: nothing drops it (that would need root and disturbs other jobs), so reads
are from RAM and the numbers are the CPU cost of hashing; from a cold disk, reading the
files costs as much again for hashing as for loading.

    PYTHONPATH=. python benchmarks/checkpoints.py [--layers 8] [--d-model 768] [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _median_time(fn, reps: int, setup=None) -> float:
    times = []
    for _ in range(reps):
        if setup is not None:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp folder under .)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from transformers.utils import logging as hf_logging

    from safetygeo.models.handle import load_model
    from safetygeo.models.tiny import tiny_model_and_tokenizer
    from safetygeo.training.checkpoints import (
        STAGING,
        _fsync_and_hash,
        commit_checkpoint,
        file_sha256,
        verify_checkpoint,
    )

    hf_logging.disable_progress_bar()
    model, tok = tiny_model_and_tokenizer("llama", vocab_size=args.vocab, n_layers=args.layers,
                                          d_model=args.d_model, n_heads=args.d_model // 64, d_mlp=int(args.d_model * 8 / 3))
    n_params = sum(p.numel() for p in model.parameters())
    optim = {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p),
                           "exp_avg_sq": torch.rand_like(p)}
                       for i, p in enumerate(model.parameters())},
             "param_groups": [{"lr": 1e-5, "params": list(range(len(list(model.parameters()))))}]}
    root = Path(tempfile.mkdtemp(prefix=".bench-ckpt-", dir=args.dir or "."))
    res: dict = {"n_params": n_params, "threads": args.threads, "reps": args.reps,
                 "python": platform.python_version(), "torch": torch.__version__,
                 "cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
                 "loadavg_start": os.getloadavg()}
    staged, step = root / STAGING / "checkpoint-1", root / "step-000001"
    try:
        def save_model() -> None:
            shutil.rmtree(staged, ignore_errors=True)
            model.save_pretrained(staged, safe_serialization=True)
            tok.save_pretrained(staged)

        def fresh() -> None:  # a trainer-written checkpoint, dirty in the page cache
            shutil.rmtree(step, ignore_errors=True)
            save_model()
            torch.save(optim, staged / "optimizer.pt")

        res["save_pretrained_s"] = _median_time(save_model, args.reps)
        res["torch_save_optimizer_s"] = _median_time(
            lambda: torch.save(optim, staged / "optimizer.pt"), args.reps)
        sizes = {f.name: f.stat().st_size for f in _files(staged)}
        res["weights_bytes"] = sizes["model.safetensors"]
        res["checkpoint_bytes"] = sum(sizes.values())

        def fsync_only() -> None:  # the commit pass before #12 (sizes only)
            for f in _files(staged):
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())

        def commit() -> None:  # now: fsync + SHA-256 of every file (threads), marker, rename
            commit_checkpoint(staged, root, 1, metrics={}, method_state={})

        res["commit_fsync_only_s"] = _median_time(fsync_only, args.reps, setup=fresh)
        res["commit_checkpoint_s"] = _median_time(commit, args.reps, setup=fresh)
        res["commit_serial_fsync_and_hash_s"] = _median_time(
            lambda: [_fsync_and_hash(f) for f in _files(staged)], args.reps, setup=fresh)
        fresh()
        commit()
        res["verify_resume_s"] = _median_time(lambda: verify_checkpoint(step), args.reps)
        res["verify_load_s"] = _median_time(lambda: verify_checkpoint(step, for_loading=True),
                                            args.reps)
        res["verify_serial_all_s"] = _median_time(lambda: [file_sha256(f) for f in _files(step)],
                                                  args.reps)
        res["load_model_s"] = _median_time(lambda: load_model(str(step), dtype="float32"), args.reps)
        res["load_model_state_sum_s"] = _median_time(
            lambda: sum(float(p.detach().sum()) for p in
                        load_model(str(step), dtype="float32").model.parameters()), args.reps)

        buf = os.urandom(256 << 20)
        mv = memoryview(buf)
        for name in ("sha256", "blake2b", "sha1"):
            def run(name=name) -> None:
                h = hashlib.new(name)
                for i in range(0, len(buf), 4 << 20):
                    h.update(mv[i:i + (4 << 20)])
            res[f"hashlib_{name}_GBps"] = len(buf) / 1e9 / _median_time(run, args.reps)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res["loadavg_end"] = os.getloadavg()

    gb_ck, gb_w = res["checkpoint_bytes"] / 1e9, res["weights_bytes"] / 1e9
    hash_commit = res["commit_checkpoint_s"] - res["commit_fsync_only_s"]
    save_all = res["save_pretrained_s"] + res["torch_save_optimizer_s"]
    res["derived"] = {
        "verify_resume_s_per_GB": res["verify_resume_s"] / gb_ck,
        "verify_serial_s_per_GB": res["verify_serial_all_s"] / gb_ck,
        "commit_hash_extra_s_per_GB": hash_commit / gb_ck,
        "commit_hash_extra_vs_save_checkpoint": hash_commit / save_all,
        "commit_hash_extra_vs_save_pretrained": hash_commit / res["save_pretrained_s"],
        "verify_load_vs_load_model": res["verify_load_s"] / res["load_model_s"],
    }
    d = res["derived"]
    print(f"model: {n_params / 1e6:.1f}M params, weights {gb_w * 1000:.0f} MB, checkpoint with "
          f"optimizer {gb_ck * 1000:.0f} MB; {args.threads} torch threads, median of {args.reps}")
    print(f"write: save_pretrained {res['save_pretrained_s']:.2f} s, torch.save(optimizer) "
          f"{res['torch_save_optimizer_s']:.2f} s")
    print(f"commit: fsync only (before) {res['commit_fsync_only_s']:.2f} s, commit_checkpoint "
          f"(fsync + SHA-256, threads) {res['commit_checkpoint_s']:.2f} s, serial "
          f"{res['commit_serial_fsync_and_hash_s']:.2f} s -> hashing adds {hash_commit:.2f} s "
          f"({d['commit_hash_extra_s_per_GB']:.2f} s/GB; {d['commit_hash_extra_vs_save_checkpoint']:.0%} "
          f"of writing the checkpoint, {d['commit_hash_extra_vs_save_pretrained']:.1f}x save_pretrained)")
    print(f"verify: resume (all files) {res['verify_resume_s']:.2f} s ({d['verify_resume_s_per_GB']:.2f}"
          f" s/GB; serial {d['verify_serial_s_per_GB']:.2f} s/GB); load (weights side) "
          f"{res['verify_load_s']:.2f} s = {d['verify_load_vs_load_model']:.1f}x load_model "
          f"({res['load_model_s']:.2f} s; + reading every weight once: {res['load_model_state_sum_s']:.2f} s)")
    print("hashlib GB/s: " + ", ".join(f"{n} {res[f'hashlib_{n}_GBps']:.2f}"
                                       for n in ("sha256", "blake2b", "sha1")))
    print(f"load average: start {res['loadavg_start']}, end {res['loadavg_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
