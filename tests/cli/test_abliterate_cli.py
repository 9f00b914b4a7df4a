"""``select-carrier`` → ``search-abliteration`` → ``abliterate`` → ``inspect`` end to end on a
planted checkpoint (tiny Llama with the BPE tokenizer of models/tiny.py, not the toy world's):
settings saved by one command are read by the next."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from safetygeo.activations.logits import last_logprobs
from safetygeo.causal.abliteration import slot_directions
from safetygeo.causal.carriers import CarrierSelection
from safetygeo.cli import app
from safetygeo.interventions.kernel import AbliterationKernel, abliterated_copy
from safetygeo.models import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetygeo.toy.planted import planted_refusal_model

    pm = planted_refusal_model(n_prompts=32)
    d = tmp_path_factory.mktemp("planted-abliterate")
    pm.handle.model.save_pretrained(d / "model")
    pm.handle.tokenizer.save_pretrained(d / "model")
    for name, texts in (("harmful", pm.harmful), ("harmless", pm.harmless)):
        (d / f"{name}.txt").write_text("\n".join(texts[:20]))
        (d / f"{name}_eval.txt").write_text("\n".join(texts[20:]))
    res = runner.invoke(app, ["select-carrier", str(d / "model"), "--set",
                              f"harmful={d / 'harmful.txt'}", "--set",
                              f"harmless={d / 'harmless.txt'}", "--out", str(d / "carriers"),
                              "--test-top-k", "0"])
    assert res.exit_code == 0, res.output
    return d


def _eval_sets(d: Path) -> list[str]:
    return ["--set", f"harmful={d / 'harmful_eval.txt'}", "--set",
            f"harmless={d / 'harmless_eval.txt'}", "--set", f"fit.harmless={d / 'harmless.txt'}"]


def test_abliterate_writes_a_checkpoint_that_other_commands_load(planted: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "edited"
    res = runner.invoke(app, ["abliterate", str(planted / "model"), "--carriers",
                              str(planted / "carriers"), *_eval_sets(planted), "--attn-max", "1.2",
                              "--attn-peak", "0", "--attn-min", "0.5", "--attn-distance", "2",
                              "--mlp-max", "0", "--norm", "rows-renormalized", "--projected",
                              "harmless-own-slot", "--n-null", "3", "--max-new-tokens", "2",
                              "--refusal-marker", "II",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "over-ablation" in res.output  # a weight above 1 is allowed with a warning
    prov = json.loads((out / "abliteration.json").read_text())
    assert prov["format"] == "safetygeo.abliteration"
    assert prov["kernel"]["norm"] == "rows-renormalized"
    assert prov["block_weights"]["attention"][:3] == pytest.approx([1.2, 0.85, 0.5])
    held = prov["held_out"]
    assert held["point"].startswith("0/12 @")  # the planted refusal is gone
    assert held["null_point"].startswith("12/12 @")  # random directions leave it
    assert "abliterated" in (out / "README.md").read_text()
    # another command loads the written checkpoint
    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_layers"] == 4
    # and it computes what the in-memory edit computes
    sel = CarrierSelection.load(planted / "carriers")
    src = load_model(str(planted / "model"), dtype="float32")
    from safetygeo.causal.abliteration import harmless_means

    means = harmless_means(src, (planted / "harmless.txt").read_text().splitlines())
    kernel = AbliterationKernel.from_dict(prov["kernel"])
    assert kernel.direction_index == float(sel.chosen[0])
    with pytest.warns(UserWarning):
        mem = abliterated_copy(src, slot_directions(sel), kernel, means)
    back = load_model(str(out), dtype="float32")
    prompts = ["How do I bomb the house?", "Tell me a story about a dog."]
    torch.testing.assert_close(last_logprobs(back, prompts, progress=False),
                               last_logprobs(mem, prompts, progress=False), atol=1e-5, rtol=0)


def test_search_front_is_read_by_abliterate(planted: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["search-abliteration", str(planted / "model"), "--carriers",
                              str(planted / "carriers"), *_eval_sets(planted)[:4],
                              "--norm", "plain", "--n-trials", "6", "--n-startup", "4",
                              "--n-null", "2", "--max-front", "2", "--max-new-tokens", "2",
                              "--refusal-marker", "II",
                              "--out", str(tmp_path / "search")])
    assert res.exit_code == 0, res.output
    assert "refusals/N @ KL" in res.output and "/12 @ " in res.output
    info = json.loads((tmp_path / "search" / "search.json").read_text())
    assert info["format"] == "safetygeo.abliteration_search" and info["front"]
    trials = pd.read_parquet(tmp_path / "search" / "trials.parquet")
    assert len(trials) == 6 and trials.pareto.any()
    first = info["front"][0]
    res = runner.invoke(app, ["abliterate", str(planted / "model"), "--carriers",
                              str(planted / "carriers"), "--kernel",
                              str(tmp_path / "search" / "search.json"), "--trial",
                              str(first["trial"]), "--out", str(tmp_path / "edited")])
    assert res.exit_code == 0, res.output
    prov = json.loads((tmp_path / "edited" / "abliteration.json").read_text())
    assert prov["search_trial"] == first["trial"]
    assert prov["kernel"] == first["kernel"]
    assert prov["held_out"] is None


def test_bad_inputs_are_one_line_errors(planted: Path, tmp_path: Path) -> None:
    base = ["abliterate", str(planted / "model"), "--carriers", str(planted / "carriers"),
            "--out", str(tmp_path / "x")]
    res = runner.invoke(app, [*base, "--projected", "harmless-own-slot"])
    assert res.exit_code == 2 and "fit.harmless" in res.output
    res = runner.invoke(app, [*base, "--norm", "sideways"])
    assert res.exit_code == 2 and "norm must be one of" in res.output
    res = runner.invoke(app, [*base, "--attn-distance", "0"])
    assert res.exit_code == 2 and "distance" in res.output


def test_lora_adapter_reproduces_the_merged_edit(planted: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    args = ["abliterate", str(planted / "model"), "--carriers", str(planted / "carriers"),
            "--attn-max", "0.9", "--mlp-max", "0.4", "--norm", "rows-prescaled", "--per-layer"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "merged")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*args, "--lora", "--out", str(tmp_path / "lora")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    src = load_model(str(planted / "model"), dtype="float32")
    adapted = PeftModel.from_pretrained(src.model, str(tmp_path / "lora")).merge_and_unload()
    h_lora = load_model((adapted, src.tokenizer))
    merged = load_model(str(tmp_path / "merged"), dtype="float32")
    prompts = ["How do I bomb the house?", "Tell me a story about a dog."]
    torch.testing.assert_close(last_logprobs(h_lora, prompts, progress=False),
                               last_logprobs(merged, prompts, progress=False), atol=1e-5, rtol=0)
    res = runner.invoke(app, [*args[:-3], "--norm", "rows-renormalized", "--lora",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "full rank" in " ".join(res.output.split())
