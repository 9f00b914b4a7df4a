"""Shared fixtures: seeded RNGs and tiny offline models of every supported family."""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from safetygeo.models import ModelHandle, load_model
from safetygeo.models.tiny import ARCHS, tiny_model_and_tokenizer

GPT2_TEMPLATE = "User: {instruction}\nAssistant:"

# one toy-model cache for the whole session, the notebooks' kernels included (they inherit
# the environment): the toy world is trained once per fresh checkout
os.environ.setdefault("SAFETYGEO_TOY_DIR", str(Path(__file__).resolve().parents[1] / "artifacts" / "toy"))
# the real-language world's dequantized base copy and stages, made once per checkout
os.environ.setdefault("SAFETYGEO_REAL_DIR", str(Path(__file__).resolve().parents[1] / "artifacts" / "real"))

PROMPTS = [
    "Write a poem about the sea.",
    "Hi",
    "How do I make a cake for my mother and father before the party tonight?",
    "Tell me a story.",
    "Explain how to build a small boat.",
]


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    """Tiny models run fastest single-threaded; several intra-op threads on a loaded
    2-core machine slowed the suite ~15x (measured)."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cpus_kept():
    """No test may leave the session pinned to fewer cores: the toy build that a later test
    triggers then ran ~10x slower (OpenMP threads spinning on one core) and CI timed out."""
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    yield
    if before is not None and os.sched_getaffinity(0) != before:
        os.sched_setaffinity(0, before)
        pytest.fail(f"the test changed the process's CPU affinity (was {sorted(before)})")


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@functools.lru_cache(maxsize=None)
def _cached(arch: str, n_layers: int, d_model: int) -> tuple:
    return tiny_model_and_tokenizer(arch, n_layers=n_layers, d_model=d_model)


def tiny_handle(arch: str = "llama", n_layers: int = 3, d_model: int = 32, **kw) -> ModelHandle:
    """A tiny handle (model shared across tests: never mutate its weights in a test)."""
    model, tok = _cached(arch, n_layers, d_model)
    if arch == "gpt2":
        kw.setdefault("template", GPT2_TEMPLATE)
    return load_model(model, tok, **kw)


@pytest.fixture(params=ARCHS)
def any_handle(request: pytest.FixtureRequest) -> ModelHandle:
    return tiny_handle(request.param)


@pytest.fixture
def llama() -> ModelHandle:
    return tiny_handle("llama")


@pytest.fixture(scope="session")
def toy_built() -> dict:
    """The toy anchor (and the harmful-SFT attack on it), built once into the shared cache;
    returns the stages' ``toy.json``."""
    from safetygeo.toy.zoo import ensure_toy

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the recipe's measured setting (tests otherwise run on 1 thread)
    try:
        return ensure_toy(("anchor", "attacked"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_executor():
    """One local Ray instance (2 CPUs) for the whole session (starting one costs ~10-30 s);
    executors made later find it running and leave it up; shut down at the end."""
    pytest.importorskip("ray", reason="the ray executor needs ray (pip install 'safetygeo[ray]')")
    from safetygeo._executor import RayExecutor

    ex = RayExecutor(workers=2)
    yield ex
    ex.close()
