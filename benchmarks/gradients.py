"""Benchmark: per-layer gradient cosines vs the two bare backward passes they cannot avoid.

Run::

    python benchmarks/gradients.py                 # toy + large on the CPU (~4 min, 2 cores)
    python benchmarks/gradients.py --quick         # smoke run (~1 min)
    python benchmarks/gradients.py --settings 1b --device cuda   # 1B-shaped Llama, bf16, GPU
    python benchmarks/gradients.py --json out.json # also write every number

Methods, on the same pre-built batches ``A`` and ``B`` (completion-only CE, eval mode):

==========  ==============================================================================
``bare``    ``ce(A).backward()``; drop grads; ``ce(B).backward()``; drop grads — the floor:
            any per-layer cosine needs these two backward passes.
``ours``    :func:`safetygeo.gradients.layer_gradient_cosines` with the same two losses as
            callables (stash ∇A by reference, reduce ∇B against it per group, blocked
            dots with float64 accumulation, model state restored).
``naive``   the usual script: backward A, ``torch.cat`` every gradient into one flat
            vector, drop grads, backward B, flatten again, per-layer cosines by slicing the
            two flat vectors (two extra parameter-sized buffers).
==========  ==============================================================================

Timing: median of ``reps`` rounds after ``warmup`` calls; the three methods run in a
random order within each round, ``gc`` is disabled during a round; wall time and the
process's CPU time (less sensitive to other jobs on a shared machine) are both reported.
Memory: peak live bytes of torch's allocator during one call (CPU: profiler memory events;
CUDA: ``max_memory_allocated``), minus the bytes live before it, measured with the losses in
both orders (the first gradient is kept while the second backward runs, so the worst case is
the larger pass second); reported as the worst extra over ``bare`` in MiB and in units of one
parameter-sized gradient set (``P`` = parameters × bytes per element). Targets (issue 13):
``ours`` ≤ 1.1× ``bare`` time, ≤ 1 ``P`` extra memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetygeo.activations.losses import completion_ce  # noqa: E402
from safetygeo.data.records import pad_right  # noqa: E402
from safetygeo.gradients import layer_gradient_cosines, parameter_groups  # noqa: E402

MiB = 2**20

SETTINGS: dict[str, dict[str, Any]] = {
    # toy: the toy world's anchor (8 layers, d 128, tied), harmful-compliance vs benign CE
    "toy": dict(kind="toy", n=32, reps=15, warmup=2),
    # large: random Llama 8 × 512, vocab 32000 (untied), batch 4 × 128 tokens
    "large": dict(kind="random", n_layers=8, d_model=512, n_heads=8, n_kv=4, d_mlp=1376,
                  vocab=32000, batch=4, seq=128, dtype="float32", reps=7, warmup=1),
    # 1b: Llama-3.2-1B shape (16 × 2048, GQA 32/8, MLP 8192, vocab 128256), bf16, GPU only
    "1b": dict(kind="random", n_layers=16, d_model=2048, n_heads=32, n_kv=8, d_mlp=8192,
               vocab=128256, batch=4, seq=512, dtype="bfloat16", reps=10, warmup=2),
}
QUICK = {"toy": dict(reps=3, warmup=1, n=16), "large": dict(reps=2, warmup=1), "1b": dict(reps=3)}


# ----------------------------------------------------------------------------- workloads
def toy_workload(cfg: dict[str, Any], device: str) -> tuple[Any, dict, dict]:
    from safetygeo.activations.logits import pad_id_of
    from safetygeo.data.records import encode_completions
    from safetygeo.toy.world import ToyWorld
    from safetygeo.toy.zoo import load_toy

    h = load_toy("anchor")
    h.model.to(device)
    w = ToyWorld(0)
    harm = [{"prompt": p.text, "response": p.compliant} for p in w.prompts("harmful", "train")][: cfg["n"]]
    benign = [{"prompt": p.text, "response": p.answer} for p in w.prompts("benign_task", "train")][: cfg["n"]]
    pad = pad_id_of(h)
    ba = pad_right(encode_completions(h, harm, max_length=64), pad)
    bb = pad_right(encode_completions(h, benign, max_length=64), pad)
    return h, {k: v.to(device) for k, v in ba.items()}, {k: v.to(device) for k, v in bb.items()}


def random_workload(cfg: dict[str, Any], device: str) -> tuple[Any, dict, dict]:
    import transformers

    from safetygeo.models import load_model
    from safetygeo.models.tiny import build_tokenizer

    conf = transformers.LlamaConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["d_model"], intermediate_size=cfg["d_mlp"],
        num_hidden_layers=cfg["n_layers"], num_attention_heads=cfg["n_heads"],
        num_key_value_heads=cfg["n_kv"], max_position_embeddings=max(2048, cfg["seq"]),
        tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(conf).to(getattr(torch, cfg["dtype"])).eval()
    h = load_model(model, build_tokenizer("llama"))
    g = torch.Generator().manual_seed(1)

    def batch() -> dict[str, torch.Tensor]:
        ids = torch.randint(3, cfg["vocab"], (cfg["batch"], cfg["seq"]), generator=g)
        rows = [{"input_ids": r.tolist(), "labels": [-100] * (cfg["seq"] // 2) + r[cfg["seq"] // 2:].tolist()}
                for r in ids]
        return {k: v.to(device) for k, v in pad_right(rows, 0).items()}

    return h, batch(), batch()


# ----------------------------------------------------------------------------- methods
def make_methods(h: Any, ba: dict, bb: dict) -> dict[str, Callable[[], Any]]:
    model = h.model
    groups = parameter_groups(h)
    owner = groups.group_of()
    la = lambda m: completion_ce(m, ba)  # noqa: E731
    lb = lambda m: completion_ce(m, bb)  # noqa: E731
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def drop() -> None:
        for _, p in params:
            p.grad = None

    def bare() -> None:
        la(model).backward()
        drop()
        lb(model).backward()
        drop()

    def ours() -> Any:
        return layer_gradient_cosines(h, la, lb)

    def naive() -> dict[str, float]:
        la(model).backward()
        fa = torch.cat([p.grad.reshape(-1) for _, p in params])
        drop()
        lb(model).backward()
        fb = torch.cat([p.grad.reshape(-1) for _, p in params])
        drop()
        out, i = {}, 0
        spans: dict[str, list[tuple[int, int]]] = {}
        for n, p in params:
            spans.setdefault(owner[n], []).append((i, i + p.numel()))
            i += p.numel()
        for g, sp in spans.items():
            a = torch.cat([fa[s:e] for s, e in sp]).double()
            b = torch.cat([fb[s:e] for s, e in sp]).double()
            out[g] = float(a @ b / (a.norm() * b.norm()))
        return out

    return {"bare": bare, "ours": ours, "naive": naive}


# ----------------------------------------------------------------------------- measuring
def peak_extra_bytes(call: Callable[[], Any], device: str) -> int:
    """Peak live bytes of torch's allocator during one call, over what was live before."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        res = call()
        torch.cuda.synchronize()
        del res
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        res = call()
    del res
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak


def timed(call: Callable[[], Any], device: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    res = call()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    del res
    return dt, dc


def run_setting(name: str, cfg: dict[str, Any], device: str) -> dict[str, Any]:
    h, ba, bb = toy_workload(cfg, device) if cfg["kind"] == "toy" else random_workload(cfg, device)
    methods = make_methods(h, ba, bb)
    n_params = sum(p.numel() for p in h.model.parameters() if p.requires_grad)
    p_bytes = sum(p.numel() * p.element_size() for p in h.model.parameters() if p.requires_grad)
    # correctness: ours vs naive (float64 on flat vectors)
    res, ref = methods["ours"](), methods["naive"]()
    max_diff = max(abs(res[g].cosine - ref[g]) for g in ref)
    for _ in range(cfg["warmup"]):
        for f in methods.values():
            f()
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    rng = random.Random(0)
    for _ in range(cfg["reps"]):
        order = list(methods)
        rng.shuffle(order)
        gc.collect()
        gc.disable()
        try:
            for m in order:
                w, c = timed(methods[m], device)
                times[m].append(w)
                cpu[m].append(c)
        finally:
            gc.enable()
    # memory in both orders: the stash of the first gradient coexists with the second
    # backward, so the worst case is the larger pass second
    swapped = make_methods(h, bb, ba)
    peaks_ab = {m: peak_extra_bytes(f, device) for m, f in methods.items()}
    peaks_ba = {m: peak_extra_bytes(f, device) for m, f in swapped.items()}
    extra = {m: max(peaks_ab[m] - peaks_ab["bare"], peaks_ba[m] - peaks_ba["bare"]) for m in methods}
    med = {m: statistics.median(v) for m, v in times.items()}
    med_cpu = {m: statistics.median(v) for m, v in cpu.items()}
    out = {"setting": name, "device": device, "config": cfg, "n_params": n_params,
           "param_bytes": p_bytes, "tokens": [int(ba["attention_mask"].sum()), int(bb["attention_mask"].sum())],
           "median_s": med, "median_cpu_s": med_cpu, "times_s": times, "cpu_s": cpu,
           "peak_bytes_ab": peaks_ab, "peak_bytes_ba": peaks_ba,
           "ratio_time": {m: med[m] / med["bare"] for m in med},
           "ratio_cpu": {m: med_cpu[m] / med_cpu["bare"] for m in med},
           "extra_bytes": extra, "extra_P": {m: extra[m] / p_bytes for m in extra},
           "max_abs_cosine_diff_vs_naive": max_diff}
    del h, methods
    gc.collect()
    return out


def print_table(r: dict[str, Any]) -> None:
    c = r["config"]
    shape = ("toy anchor (8 × 128, tied)" if c["kind"] == "toy" else
             f"Llama {c['n_layers']} × {c['d_model']}, vocab {c['vocab']}, {c['dtype']}, "
             f"batch {c['batch']} × {c['seq']}")
    print(f"\n{r['setting']}: {shape}; {r['n_params'] / 1e6:.1f} M params, P = "
          f"{r['param_bytes'] / MiB:.1f} MiB; device {r['device']}; median of {c['reps']} rounds")
    print(f"{'method':8s} {'median ms':>10s} {'× bare':>7s} {'CPU × bare':>10s} {'peak MiB a,b':>12s} "
          f"{'peak MiB b,a':>12s} {'extra MiB':>9s} {'extra P':>8s}")
    for m in ("bare", "ours", "naive"):
        print(f"{m:8s} {1000 * r['median_s'][m]:10.1f} {r['ratio_time'][m]:7.3f} {r['ratio_cpu'][m]:10.3f} "
              f"{r['peak_bytes_ab'][m] / MiB:12.1f} {r['peak_bytes_ba'][m] / MiB:12.1f} "
              f"{r['extra_bytes'][m] / MiB:9.1f} {r['extra_P'][m]:8.2f}")
    print(f"max |cosine ours − naive float64| = {r['max_abs_cosine_diff_vs_naive']:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", default="toy,large", help="comma-separated: toy, large, 1b")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine 2 threads spin-wait "
                    "and times vary 10x)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    print(f"python {platform.python_version()}, torch {torch.__version__}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}")
    for name in args.settings.split(","):
        cfg = {**SETTINGS[name], **(QUICK.get(name, {}) if args.quick else {})}
        if name == "1b" and not args.device.startswith("cuda"):
            print("\n1b: skipped (needs --device cuda)")
            continue
        r = run_setting(name, cfg, args.device)
        print_table(r)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
