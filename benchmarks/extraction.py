"""Benchmark: cost of reading the residual stream, ours vs plain HF, nnsight and TransformerLens.

Run::

    python benchmarks/extraction.py            # full run (~3 min on 2 CPU cores)
    python benchmarks/extraction.py --quick    # CI smoke (~40 s): few reps, no RSS subprocesses
    python benchmarks/extraction.py --json out.json   # also write every number + raw times
    python benchmarks/extraction.py --rss-sweep       # + RSS vs seq length (~1 extra min)

For each setting (a tiny and a larger random-init Llama) every method reads the residual
stream at **all** layers (``resid_pre`` of each block + the final-norm input) and reduces it
to the mean over the batch at the post-instruction positions (the last ``n_eoi`` tokens),
on the *same* pre-built left-padded batch with explicit ``position_ids``:

====================  =========================================================================
``plain``             ``model(input_ids, attention_mask, position_ids, use_cache=False)``
                      (full causal LM, ``torch.inference_mode``) -- the reference.
``plain_eager``       the same on a copy with ``attn_implementation="eager"`` (TransformerLens'
                      bridge forces eager attention, so this is *its* fair baseline).
``trunk``             ``handle.trunk`` forward (embedding, blocks, final norm; no LM head) with
                      no hooks -- what ``capture_resid`` runs, minus the hooks and early stop.
``bare_hook``         ``plain`` + a minimal forward pre-hook on every block and the final norm
                      summing the selected positions (float64) -- the floor for hook overhead.
``ours_hot``          the per-batch work of :func:`extract_activations`: ``capture_resid`` +
                      ``MomentAccumulator.update`` per layer (fresh accumulator each call).
``ours_e2e``          ``extract_activations(handle, prompts, batch_size=B)`` on the B prompts
                      of the batch (adds chat formatting, tokenization, padding, metadata).
``nnsight``           ``TransformersModel(model, tokenizer=tok).trace(...)`` saving ``.input``
                      of every block + final norm, then the mean outside the trace (on a
                      deep copy: nnsight patches the modules' ``forward`` in place).
``nnsight_slice``     the same but slicing ``[:, -n_eoi:]`` *inside* the trace (nnsight at best).
``tl_filtered``       ``TransformerBridge.boot_transformers(hf_model=deepcopy(model))`` then
                      ``run_with_cache(names_filter=[blocks.l.hook_resid_pre, ln_final.hook_in])``
                      + mean.
``tl_full``           ``TransformerBridge.run_with_cache()`` (unfiltered cache) + mean.
====================  =========================================================================

Timing: median of N repetitions after warm-up, ``time.perf_counter``, fixed
``torch.set_num_threads``, methods interleaved within each repetition (random order; in the
small setting each timed call directly follows an untimed call of the same method, so it is
the steady-state cost, not the cost of running after another library's garbage),
``gc`` disabled during a round (one full collection between rounds). Rounds during which
other processes used more than 5% of the machine (``/proc/stat``) are discarded and re-run.

Memory (three views, all in MiB):

* ``retained``: bytes of the activation tensors a method holds when its call returns
  (distinct storages, so a view keeps its whole base alive): ours = accumulator sums + the
  selected slices; ``extract_activations`` = the returned stats; nnsight = the saved
  tensors; TL = the cache dict; bare hook = its sums.
* ``peak``/``extra``: peak live bytes of torch's CPU allocator during one call, from the
  profiler's memory events (``profile_memory=True``), and that peak minus ``plain``'s.
* ``RSS+``: in a fresh subprocess per method (large setting by default): the peak RSS
  (``VmHWM``) of 2 calls minus that of 2 plain forwards, each phase starting after
  ``malloc_trim`` and a reset of the peak mark, with model, batch and the method's
  wrapper/copies already built and warmed up. This is the process-level cost *including
  glibc heap fragmentation*; its noise is about +-15 MiB at the large setting.
  ``--malloc-mmap-threshold 131072`` fixes glibc's dynamic mmap threshold, which removes
  most fragmentation (RSS+ then tracks ``extra``).

Correctness: every method's mean is compared with ours (max abs difference).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is in-memory; never hit the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetygeo.activations.extract import extract_activations  # noqa: E402
from safetygeo.activations.reducers import MomentAccumulator  # noqa: E402
from safetygeo.models import load_model  # noqa: E402
from safetygeo.models.batching import Batch, iter_batches  # noqa: E402
from safetygeo.models.handle import ModelHandle  # noqa: E402
from safetygeo.models.hooks import capture_resid, forward_trunk  # noqa: E402
from safetygeo.models.tiny import _WORDS, tiny_model_and_tokenizer  # noqa: E402

MiB = 2**20

SETTINGS: dict[str, dict[str, int]] = {
    # name: model shape, batch, sequence length (longest prompt), repetitions, warm-up calls,
    # untimed calls of the same method right before each timed one (steady state: the
    # previous call in a random order can be tl_full, whose ~20 MiB-1 GiB of frees slow the
    # next ~10 ms call by several %; irrelevant at 0.5 s per call)
    "small": dict(n_layers=4, d_model=256, n_heads=4, batch=8, seq=32, reps=30, warmup=5,
                  settle=1),
    "large": dict(n_layers=8, d_model=512, n_heads=8, batch=8, seq=256, reps=10, warmup=2,
                  settle=0),
}
QUICK = {"small": dict(reps=3, warmup=1), "large": dict(reps=2, warmup=1)}

METHODS = ("plain", "plain_eager", "trunk", "bare_hook", "ours_hot", "ours_e2e", "nnsight",
           "nnsight_slice", "tl_filtered", "tl_full")
LABELS = {
    "plain": "1  plain HF forward (sdpa)",
    "plain_eager": "1e plain HF forward (eager attn)",
    "trunk": "1t trunk forward, no LM head",
    "bare_hook": "2  bare pre-hooks, sum eoi",
    "ours_hot": "3a ours: capture_resid+update",
    "ours_e2e": "3b ours: extract_activations",
    "nnsight": "4  nnsight: save inputs + mean",
    "nnsight_slice": "4b nnsight: slice in trace",
    "tl_filtered": "5i TL run_with_cache(resid)",
    "tl_full": "5ii TL run_with_cache(all)",
}


# --------------------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------------------
def make_prompts(handle: ModelHandle, n: int, seq: int, seed: int = 0) -> list[str]:
    """``n`` instructions whose chat-formatted lengths spread over ``[0.6 seq, seq]``; the
    longest is exactly ``seq`` tokens so the left-padded batch is ``[n, seq]``."""
    g = torch.Generator().manual_seed(seed)
    overhead = len(handle.encode(["x"]).input_ids[0]) - 1
    targets = [seq] + [int(seq * (0.6 + 0.4 * float(torch.rand(1, generator=g))))
                       for _ in range(n - 1)]

    def text(words: list[str]) -> str:
        return " ".join(words).capitalize() + "."

    def n_tok(words: list[str]) -> int:
        return len(handle.encode([text(words)]).input_ids[0])

    prompts = []
    for target in targets:
        target = max(target, overhead + 2)
        words: list[str] = []
        length = n_tok(words)
        while length < target:  # grow word by word (cheap: prompts are < 300 tokens)
            words.append(_WORDS[int(torch.randint(0, len(_WORDS), (1,), generator=g))])
            length = n_tok(words)
        while length > target and words:  # overshoot: drop the word, then pad with " a"
            words.pop()
            length = n_tok(words)
            while length < target:
                words.append("a")
                length = n_tok(words)
        prompts.append(text(words))
    return prompts


@dataclass
class Setting:
    name: str
    cfg: dict[str, int]
    model: Any
    tok: Any
    handle: ModelHandle
    prompts: list[str]
    batch: Batch
    n_eoi: int
    layers: tuple[int, ...]
    offsets: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kwargs(self) -> dict[str, Any]:
        b = self.batch
        return dict(input_ids=b.input_ids, attention_mask=b.attention_mask,
                    position_ids=b.position_ids, use_cache=False)


def build_setting(name: str, cfg: dict[str, int], seq: int | None = None,
                  model_tok: tuple[Any, Any] | None = None) -> Setting:
    seq = seq or cfg["seq"]
    if model_tok is None:
        model_tok = tiny_model_and_tokenizer(
            "llama", n_layers=cfg["n_layers"], d_model=cfg["d_model"], n_heads=cfg["n_heads"],
            max_positions=max(512, seq),
        )
    model, tok = model_tok
    handle = load_model((model, tok))
    prompts = make_prompts(handle, cfg["batch"], seq)
    enc = handle.encode(prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    batches = list(iter_batches(enc.input_ids, cfg["batch"], pad))  # what extract_activations does
    assert len(batches) == 1, "prompts must fill exactly one batch"
    batch = batches[0]
    assert batch.input_ids.shape == (cfg["batch"], seq), batch.input_ids.shape
    layers = handle.check_layers("all")
    offsets = tuple(range(-enc.n_eoi, 0))
    return Setting(name, dict(cfg, seq=seq), model, tok, handle, prompts, batch, enc.n_eoi,
                   layers, offsets)


# --------------------------------------------------------------------------------------
# Methods. Each factory does its one-off setup and returns call() -> (mean, retained), where
# mean is float64 [layer, pos, d] and retained is the object holding the activation tensors.
# --------------------------------------------------------------------------------------
def _mean_of(xs: list[torch.Tensor], offsets: tuple[int, ...]) -> torch.Tensor:
    """Mean over the batch at the selected positions of full ``[batch, seq, d]`` tensors."""
    seq = xs[0].shape[1]
    cols = torch.tensor([seq + o for o in offsets])
    return torch.stack([x.index_select(1, cols).to(torch.float64).mean(0) for x in xs])


def m_plain(s: Setting) -> Callable[[], tuple[Any, Any]]:
    model, kw = s.model, s.kwargs

    def call() -> tuple[Any, Any]:
        with torch.inference_mode():
            model(**kw)
        return None, None

    return call


def m_plain_eager(s: Setting) -> Callable[[], tuple[Any, Any]]:
    model = copy.deepcopy(s.model)
    model.set_attn_implementation("eager")
    kw = s.kwargs

    def call() -> tuple[Any, Any]:
        with torch.inference_mode():
            model(**kw)
        return None, None

    return call


def m_trunk(s: Setting) -> Callable[[], tuple[Any, Any]]:
    h, batch = s.handle, s.batch

    def call() -> tuple[Any, Any]:
        with torch.inference_mode():
            forward_trunk(h, batch)
        return None, None

    return call


def m_bare_hook(s: Setting) -> Callable[[], tuple[Any, Any]]:
    model, kw, n_eoi, h = s.model, s.kwargs, s.n_eoi, s.handle
    mods = [h.blocks[i] for i in range(h.n_layers)] + [h.final_norm]
    bsz = s.batch.input_ids.shape[0]

    def call() -> tuple[Any, Any]:
        sums = torch.zeros(len(mods), n_eoi, h.d_model, dtype=torch.float64)

        def make(i: int) -> Callable[..., None]:
            def hook(mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                x = args[0] if args else kwargs["hidden_states"]
                sums[i] += x[:, -n_eoi:].sum(0, dtype=torch.float64)
            return hook

        handles = [m.register_forward_pre_hook(make(i), with_kwargs=True)
                   for i, m in enumerate(mods)]
        try:
            with torch.inference_mode():
                model(**kw)
        finally:
            for hd in handles:
                hd.remove()
        return sums / bsz, sums

    return call


def m_ours_hot(s: Setting) -> Callable[[], tuple[Any, Any]]:
    h, batch, layers, offsets = s.handle, s.batch, s.layers, s.offsets

    def call() -> tuple[Any, Any]:
        acc = MomentAccumulator(len(layers), len(offsets), h.d_model, len(batch.indices))
        acts = capture_resid(h, batch, layers, offsets)
        for slot, layer in enumerate(layers):
            acc.update(slot, acts[layer], batch.indices)
        return acc.mean(), (acc.sum, acts)

    return call


def m_ours_e2e(s: Setting) -> Callable[[], tuple[Any, Any]]:
    h, prompts, bsz = s.handle, s.prompts, s.cfg["batch"]

    def call() -> tuple[Any, Any]:
        st = extract_activations(h, prompts, layers="all", positions="post_instruction",
                                 batch_size=bsz, progress=False)
        return st.mean, st

    return call


def _nnsight_model(s: Setting) -> Any:
    from nnsight.modeling.transformers import TransformersModel

    if "nnsight" not in s.extra:
        # nnsight patches the wrapped modules in place (instance ``forward`` attributes), so
        # give it its own copy: plain/ours keep running the untouched model.
        s.extra["nnsight"] = TransformersModel(copy.deepcopy(s.model), tokenizer=s.tok)
    return s.extra["nnsight"]


def m_nnsight(s: Setting) -> Callable[[], tuple[Any, Any]]:
    nm, kw, offsets, n = _nnsight_model(s), s.kwargs, s.offsets, s.handle.n_layers

    def call() -> tuple[Any, Any]:
        saved: list[torch.Tensor] = []
        with torch.inference_mode():
            with nm.trace(**kw):
                for layer in range(n):
                    saved.append(nm.model.layers[layer].input.save())
                saved.append(nm.model.norm.input.save())
        return _mean_of(saved, offsets), saved

    return call


def m_nnsight_slice(s: Setting) -> Callable[[], tuple[Any, Any]]:
    nm, kw, n, n_eoi = _nnsight_model(s), s.kwargs, s.handle.n_layers, s.n_eoi

    def call() -> tuple[Any, Any]:
        saved: list[torch.Tensor] = []
        with torch.inference_mode():
            with nm.trace(**kw):
                for layer in range(n):
                    saved.append(nm.model.layers[layer].input[:, -n_eoi:].save())
                saved.append(nm.model.norm.input[:, -n_eoi:].save())
        return torch.stack([x.to(torch.float64).mean(0) for x in saved]), saved

    return call


def _bridge(s: Setting) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    if "tl" not in s.extra:
        tok = copy.deepcopy(s.tok)
        # With add_bos_token unset, TL re-loads the tokenizer from init_kwargs["name_or_path"]
        # (a hub id) -- impossible offline. The ids we feed already carry the BOS.
        tok.init_kwargs["add_bos_token"] = True
        s.extra["tl"] = TransformerBridge.boot_transformers(
            tok.init_kwargs["name_or_path"], hf_model=copy.deepcopy(s.model), tokenizer=tok,
            device="cpu",
        )
    return s.extra["tl"]


def _tl_call(s: Setting, filtered: bool) -> Callable[[], tuple[Any, Any]]:
    br, b, offsets, n = _bridge(s), s.batch, s.offsets, s.handle.n_layers
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n)] + ["ln_final.hook_in"]
    filt = names if filtered else None

    def call() -> tuple[Any, Any]:
        with torch.inference_mode():
            _, cache = br.run_with_cache(b.input_ids, attention_mask=b.attention_mask,
                                         position_ids=b.position_ids, names_filter=filt)
        return _mean_of([cache[k] for k in names], offsets), cache

    return call


def m_tl_filtered(s: Setting) -> Callable[[], tuple[Any, Any]]:
    return _tl_call(s, True)


def m_tl_full(s: Setting) -> Callable[[], tuple[Any, Any]]:
    return _tl_call(s, False)


FACTORIES: dict[str, Callable[[Setting], Callable[[], tuple[Any, Any]]]] = {
    "plain": m_plain, "plain_eager": m_plain_eager, "trunk": m_trunk, "bare_hook": m_bare_hook,
    "ours_hot": m_ours_hot, "ours_e2e": m_ours_e2e, "nnsight": m_nnsight,
    "nnsight_slice": m_nnsight_slice, "tl_filtered": m_tl_filtered, "tl_full": m_tl_full,
}


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------
def tensor_bytes(obj: Any) -> int:
    """Bytes of the distinct storages of the tensors in ``obj`` (nested containers,
    ActivationCache, ActivationStats)."""
    seen: set[int] = set()
    total = 0

    def visit(o: Any) -> None:
        nonlocal total
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            if st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                total += st.nbytes()
        elif isinstance(o, dict):
            for v in o.values():
                visit(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                visit(v)
        elif hasattr(o, "cache_dict"):  # transformer_lens ActivationCache
            visit(o.cache_dict)
        elif hasattr(o, "mean") and hasattr(o, "mean_outer"):  # ActivationStats
            visit([o.mean, o.mean_sq, o.mean_outer, o.vectors])

    visit(obj)
    return total


def profile_alloc(call: Callable[[], tuple[Any, Any]]) -> tuple[int, int]:
    """(peak, net) live bytes of torch's CPU allocator during one call."""
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = call()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    del result
    return peak, cur


def _cpu_snapshot() -> tuple[float, float] | None:
    """(busy CPU-seconds of the whole machine incl. steal, CPU-seconds of this process)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = (sum(vals) - vals[3] - vals[4]) / tick  # minus idle and iowait
    t = os.times()
    return busy, t.user + t.system


def time_methods(
    calls: dict[str, Callable[[], Any]], reps: int, warmup: int, settle: int = 0,
    max_foreign: float = 0.05,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Interleaved timing. A *round* runs every method once, in a random order.

    Other processes on a small machine wreck CPU timings (an OpenMP barrier whose thread
    is descheduled can cost 100x), so each round's foreign CPU time (machine busy time,
    steal included, minus ours, from ``/proc/stat``) is measured and a round where it
    exceeds ``max_foreign`` of the machine (and 3 ticks) is discarded and re-run, up to
    ``2 * reps + 2`` rounds in all (then noisy rounds are kept and counted as contended).
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    names = list(calls)
    times: dict[str, list[float]] = {k: [] for k in names}
    ncpu = os.cpu_count() or 1
    rng = random.Random(0)
    kept = discarded = attempts = contended = 0
    max_attempts = 2 * reps + 2
    foreign_kept: list[float] = []
    while kept < reps:
        # a fresh random order per round: a fixed cyclic order would always put the same
        # method right after tl_full (which frees ~0.9 GB), biasing that one method
        order = rng.sample(names, len(names))
        attempts += 1
        round_times: dict[str, float] = {}
        gc.collect()  # once per round: a full collection costs ~0.1 s with TL/nnsight loaded
        gc.disable()
        try:
            snap0, w0 = _cpu_snapshot(), time.perf_counter()
            for k in order:
                for _ in range(settle):
                    calls[k]()
                t0 = time.perf_counter()
                result = calls[k]()
                dt = time.perf_counter() - t0
                del result
                round_times[k] = dt * 1e3
            snap1, wall = _cpu_snapshot(), time.perf_counter() - w0
        finally:
            gc.enable()
        foreign = 0.0
        if snap0 is not None and snap1 is not None:
            foreign = max(0.0, (snap1[0] - snap0[0]) - (snap1[1] - snap0[1]))
        noisy = foreign > max(3 / os.sysconf("SC_CLK_TCK"), max_foreign * wall * ncpu)
        must_keep = max_attempts - attempts < reps - kept  # no attempts left to replace it
        if noisy and not must_keep:
            discarded += 1
            continue
        kept += 1
        contended += noisy
        foreign_kept.append(foreign / max(wall * ncpu, 1e-9))
        for k, v in round_times.items():
            times[k].append(v)
    info = {"rounds_kept": kept, "rounds_discarded": discarded, "rounds_contended": contended,
            "max_foreign_frac_kept": max(foreign_kept, default=0.0)}
    return times, info


def quantile(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    i = q * (len(ys) - 1)
    lo, hi = int(i), min(int(i) + 1, len(ys) - 1)
    return ys[lo] + (ys[hi] - ys[lo]) * (i - lo)


def _peak_rss() -> int:
    """Peak RSS (bytes) since the last :func:`_reset_peak_rss` (Linux ``VmHWM``), else
    the process-lifetime ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> bool:
    """Return free heap to the OS (glibc ``malloc_trim``) and reset the peak-RSS mark to
    the current RSS (Linux >= 4.0 ``clear_refs``)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_worker(setting: str, method: str, threads: int, seq: int | None = None) -> None:
    """Subprocess body: print the peak RSS of 2 calls of ``method`` minus that of 2 plain
    forwards (bytes), both after setup (model, batch, wrappers and copies already built).

    The peak mark is reset before each phase: ``ru_maxrss`` alone cannot be used, since
    Linux carries the parent's high-water mark over fork+exec into the child.
    """
    torch.set_num_threads(threads)
    s = build_setting(setting, SETTINGS[setting], seq=seq)
    plain = m_plain(s)
    call = FACTORIES[method](s)
    for _ in range(2):  # let the allocator reach its steady state for both
        plain()
        call()
    resettable = _reset_peak_rss()
    for _ in range(2):
        plain()
    base = _peak_rss()
    _reset_peak_rss()
    keep = None
    for _ in range(2):
        keep = None
        keep = call()
    peak = _peak_rss()
    del keep
    print(json.dumps({"rss_delta_bytes": peak - base, "rss_plain_peak_bytes": base,
                      "reset_peak": resettable}))


def rss_prompts_worker(n: int, threads: int) -> None:
    """Subprocess body: peak RSS of ``extract_activations`` on ``n`` short prompts (the
    small model; every layer, ``post_instruction`` positions, means only), and the RSS
    just before the call (model, tokenizer and the prompt strings already built)."""
    torch.set_num_threads(threads)
    s = build_setting("small", SETTINGS["small"])
    rng = random.Random(0)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    prompts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) + f" #{i}?"
               for i in range(n)]
    _reset_peak_rss()
    before = _peak_rss()
    extract_activations(s.handle, prompts, layers="all", positions="post_instruction",
                        batch_size=32, progress=False)
    print(json.dumps({"n": n, "rss_before_bytes": before, "rss_peak_bytes": _peak_rss()}))


def rss_prompts(counts: list[int], threads: int) -> list[dict[str, Any]]:
    """Peak RSS of extraction against the number of prompts (each count in a fresh
    process): flat when prompts are tokenized per batch (issue 26)."""
    out = []
    print("\nRSS against the number of prompts (small model, batch 32):")
    print(f"{'prompts':>8s} {'before MiB':>11s} {'peak MiB':>9s} {'peak - before':>14s}")
    for n in counts:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_rss-prompts-worker", str(n),
               "--threads", str(threads)]
        res = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                        check=True).stdout.strip().splitlines()[-1])
        out.append(res)
        mib = 1 / 2**20
        print(f"{n:8d} {res['rss_before_bytes'] * mib:11.0f} {res['rss_peak_bytes'] * mib:9.0f} "
              f"{(res['rss_peak_bytes'] - res['rss_before_bytes']) * mib:14.0f}")
    return out


def rss_delta(setting: str, method: str, threads: int,
              mmap_threshold: int | None = None, seq: int | None = None) -> int | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_rss-worker", setting, method,
           "--threads", str(threads)] + ([] if seq is None else ["--_rss-seq", str(seq)])
    env = dict(os.environ)
    if mmap_threshold is not None:  # glibc: fixed threshold, no dynamic adjustment
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True,
                             env=env)
        return int(json.loads(out.stdout.strip().splitlines()[-1])["rss_delta_bytes"])
    except Exception as exc:  # report, don't fail the whole benchmark
        print(f"  [rss] {setting}/{method} failed: {exc}", file=sys.stderr)
        return None


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def env_info(threads: int) -> dict[str, Any]:
    def ver(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "missing"

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": ver("transformers"), "nnsight": ver("nnsight"),
        "transformer_lens": ver("transformer-lens"), "cpu": cpu, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "requested_threads": threads,
    }


def fmt_mib(b: int | None) -> str:
    return "-" if b is None else f"{b / MiB:.2f}"


def run_setting(name: str, cfg: dict[str, int], methods: list[str], do_rss: bool,
                threads: int, mmap_threshold: int | None = None) -> tuple[dict[str, Any], Setting]:
    t_build = time.perf_counter()
    s = build_setting(name, cfg)
    calls = {m: FACTORIES[m](s) for m in methods}
    setup_s = time.perf_counter() - t_build
    bsz, seq = s.batch.input_ids.shape
    lengths = s.batch.attention_mask.sum(1).tolist()
    print(f"\n=== {name}: llama {cfg['n_layers']} layers, d_model {cfg['d_model']}, "
          f"{cfg['n_heads']} heads, batch {bsz}, seq {seq} (prompt lengths {lengths}), "
          f"{len(s.layers)} layer slots x {s.n_eoi} post-instruction positions; "
          f"{cfg['reps']} reps after {cfg['warmup']} warm-up, {cfg.get('settle', 0)} untimed "
          "call(s) before each timed one ===")

    # correctness and memory (one untimed call each)
    ref, _ = calls["ours_hot"]() if "ours_hot" in calls else m_ours_hot(s)()
    rows: dict[str, dict[str, Any]] = {}
    for m in methods:
        mean, retained = calls[m]()
        diff = None if mean is None else float((mean - ref).abs().max())
        rbytes = 0 if retained is None else tensor_bytes(retained)
        del mean, retained
        peak, net = profile_alloc(calls[m])
        rows[m] = {"max_abs_diff_vs_ours": diff, "retained_bytes": rbytes,
                   "peak_alloc_bytes": peak, "net_alloc_bytes": net}

    t_mem = time.perf_counter() - t_build - setup_s
    t0 = time.perf_counter()
    times, tinfo = time_methods(calls, cfg["reps"], cfg["warmup"], cfg.get("settle", 0))
    t_time = time.perf_counter() - t0
    base_med = statistics.median(times["plain"]) if "plain" in times else None
    base_peak = rows["plain"]["peak_alloc_bytes"] if "plain" in rows else 0
    for m in methods:
        med = statistics.median(times[m])
        rows[m].update(
            median_ms=med, p25_ms=quantile(times[m], 0.25), p75_ms=quantile(times[m], 0.75),
            min_ms=min(times[m]), times_ms=times[m],
            ratio_vs_plain=None if base_med is None else med / base_med,
            extra_peak_bytes=rows[m]["peak_alloc_bytes"] - base_peak,
        )
    t0 = time.perf_counter()
    if do_rss:
        for m in methods:
            rows[m]["rss_delta_bytes"] = rss_delta(name, m, threads, mmap_threshold)
    t_rss = time.perf_counter() - t0

    hdr = (f"{'method':34s} {'median ms':>10s} {'p25-p75 ms':>16s} {'x plain':>8s} "
           f"{'retained MiB':>12s} {'peak MiB':>9s} {'extra MiB':>9s} {'RSS+ MiB':>8s} "
           f"{'max|d| vs ours':>14s}")
    print(hdr)
    print("-" * len(hdr))
    for m in methods:
        r = rows[m]
        ratio = "-" if r["ratio_vs_plain"] is None else f"{r['ratio_vs_plain']:.3f}"
        diff = "-" if r["max_abs_diff_vs_ours"] is None else f"{r['max_abs_diff_vs_ours']:.1e}"
        print(f"{LABELS[m]:34s} {r['median_ms']:10.2f} "
              f"{r['p25_ms']:7.2f}-{r['p75_ms']:<8.2f} {ratio:>8s} "
              f"{fmt_mib(r['retained_bytes']):>12s} {fmt_mib(r['peak_alloc_bytes']):>9s} "
              f"{fmt_mib(r['extra_peak_bytes']):>9s} {fmt_mib(r.get('rss_delta_bytes')):>8s} "
              f"{diff:>14s}")
    print(f"rounds kept {tinfo['rounds_kept']}, discarded for foreign CPU load "
          f"{tinfo['rounds_discarded']}, kept although contended {tinfo['rounds_contended']} "
          f"(max foreign load in kept rounds {100 * tinfo['max_foreign_frac_kept']:.1f}% of "
          "the machine)")
    if tinfo["rounds_contended"]:
        print("WARNING: other processes used the CPU during timing; numbers are unreliable")
    print(f"(setup {setup_s:.0f}s, checks+memory {t_mem:.0f}s, timing {t_time:.0f}s, "
          f"RSS subprocesses {t_rss:.0f}s)")
    tinfo.update(setup_s=setup_s, checks_s=t_mem, timing_s=t_time, rss_s=t_rss)
    out = {"config": dict(s.cfg, n_eoi=s.n_eoi, prompt_lengths=lengths),
           "timing": tinfo, "methods": rows}
    return out, s


def seq_independence(settings: dict[str, Setting], seqs: tuple[int, ...],
                     methods: list[str], measured: dict[str, Any]) -> list[dict[str, Any]]:
    """Retained and peak-extra bytes of ours vs the others at several sequence lengths, on
    the same model: ours stays constant, full-sequence caches grow linearly."""
    print("\n=== extra memory vs sequence length (same model, same batch size) ===")
    cols = [m for m in ("ours_hot", "bare_hook", "nnsight", "nnsight_slice", "tl_filtered",
                        "tl_full") if m in methods]
    hdr = f"{'setting':8s} {'seq':>5s} " + " ".join(f"{m + ' ret/extra':>24s}" for m in cols)
    print(hdr + "   (MiB retained / MiB peak over plain)")
    print("-" * len(hdr))
    out = []
    for name, base in settings.items():
        for seq in seqs:
            row: dict[str, Any] = {"setting": name, "seq": seq}
            cells = []
            if seq == base.cfg["seq"]:  # measured already in the main table
                rows = measured[name]["methods"]
                for m in cols:
                    row[m] = {k: rows[m][k] for k in ("retained_bytes", "extra_peak_bytes")}
            else:
                s = build_setting(name, base.cfg, seq=seq, model_tok=(base.model, base.tok))
                s.extra = base.extra  # reuse the nnsight / TL wrappers (same weights)
                plain_peak, _ = profile_alloc(m_plain(s))
                for m in cols:
                    call = FACTORIES[m](s)
                    _, retained = call()
                    rb = tensor_bytes(retained)
                    del retained
                    peak, _ = profile_alloc(call)
                    row[m] = {"retained_bytes": rb, "extra_peak_bytes": peak - plain_peak}
            for m in cols:
                rb, ex = row[m]["retained_bytes"], row[m]["extra_peak_bytes"]
                cells.append(f"{rb / MiB:11.3f} / {ex / MiB:9.2f}")
            print(f"{name:8s} {seq:5d} " + " ".join(f"{c:>24s}" for c in cells))
            out.append(row)
    return out


def rss_sweep(
    threads: int, mmap_threshold: int | None, seqs: tuple[int, ...] = (32, 128, 256),
    methods: tuple[str, ...] = ("plain", "bare_hook", "ours_hot"),
) -> list[dict[str, Any]]:
    """RSS+ (MiB, one subprocess each) against sequence length on the large model."""
    print("\n=== RSS+ vs sequence length, large model (MiB over plain's peak RSS; noise ~15) ===")
    print(f"{'seq':>5s} " + " ".join(f"{m:>10s}" for m in methods))
    out = []
    for seq in seqs:
        row: dict[str, Any] = {"seq": seq}
        for m in methods:
            row[m] = rss_delta("large", m, threads, mmap_threshold, seq=seq)
        out.append(row)
        print(f"{seq:5d} " + " ".join(f"{fmt_mib(row[m]):>10s}" for m in methods))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few repetitions, no RSS subprocesses")
    p.add_argument("--json", metavar="PATH", help="write all results (incl. raw times) here")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--settings", default="small,large", help="comma list of: small,large")
    p.add_argument("--methods", default=",".join(METHODS), help="comma list of methods")
    p.add_argument("--reps", type=int, help="override repetitions for every setting")
    p.add_argument("--settle", type=int, help="override untimed calls before each timed one")
    p.add_argument("--rss", choices=("none", "large", "all"), default=None,
                   help="RSS subprocesses for which settings (default: large; none if --quick)")
    p.add_argument("--malloc-mmap-threshold", type=int, metavar="BYTES",
                   help="run the RSS subprocesses with MALLOC_MMAP_THRESHOLD_=BYTES (glibc); "
                        "removes allocator-fragmentation noise from RSS")
    p.add_argument("--rss-sweep", action="store_true",
                   help="also: RSS+ of plain, bare_hook and ours_hot at seq 32/128/256 on the "
                        "large model (~2 min)")
    p.add_argument("--rss-prompts", metavar="N,N,...",
                   help="only: peak RSS of extraction at these prompt counts (e.g. "
                        "500,5000,20000), each in a fresh process")
    p.add_argument("--_rss-worker", nargs=2, metavar=("SETTING", "METHOD"), help=argparse.SUPPRESS)
    p.add_argument("--_rss-prompts-worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--_rss-seq", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args._rss_worker:
        rss_worker(*args._rss_worker, threads=args.threads, seq=args._rss_seq)
        return 0
    if args._rss_prompts_worker:
        rss_prompts_worker(args._rss_prompts_worker, args.threads)
        return 0
    if args.rss_prompts:
        counts = [int(x) for x in args.rss_prompts.split(",") if x.strip()]
        res = rss_prompts(counts, args.threads)
        if args.json:
            Path(args.json).write_text(json.dumps({"rss_prompts": res}, indent=1))
        return 0

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    if "plain" not in methods:
        methods.insert(0, "plain")
    rss = args.rss or ("none" if args.quick else "large")
    env = env_info(args.threads)
    print("safetygeo extraction benchmark")
    print("  " + ", ".join(f"{k}={v}" for k, v in env.items()))
    t0 = time.perf_counter()
    results: dict[str, Any] = {"env": env, "quick": args.quick, "rss": rss,
                               "malloc_mmap_threshold": args.malloc_mmap_threshold,
                               "settings": {}}
    built: dict[str, Setting] = {}
    for name in [x.strip() for x in args.settings.split(",") if x.strip()]:
        cfg = dict(SETTINGS[name], **(QUICK[name] if args.quick else {}))
        if args.reps:
            cfg["reps"] = args.reps
        if args.settle is not None:
            cfg["settle"] = args.settle
        do_rss = rss == "all" or (rss == "large" and name == "large")
        results["settings"][name], built[name] = run_setting(
            name, cfg, methods, do_rss, args.threads, args.malloc_mmap_threshold)
    t1 = time.perf_counter()
    results["seq_independence"] = seq_independence(built, (32, 256), methods,
                                                   results["settings"])
    print(f"(seq-length table took {time.perf_counter() - t1:.0f}s)")
    if args.rss_sweep:
        results["rss_sweep"] = rss_sweep(args.threads, args.malloc_mmap_threshold)
    results["wall_s"] = time.perf_counter() - t0
    print(f"\nwall time {results['wall_s']:.0f}s; threads={torch.get_num_threads()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
