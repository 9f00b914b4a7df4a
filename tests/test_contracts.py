"""Contract tests over every registry (scikit-learn's ``parametrize_with_checks`` idea): a new
training method, report step or CLI command is checked here without writing a test for it.

* every training method: it has a toy run (a row of ``toy/stages.py``), trains a few steps
  on a tiny toy-vocabulary model, a killed run resumed equals the uninterrupted one (weights
  and logged losses), its state survives a save / load round trip, its config survives the
  manifest (JSON) round trip, and a bad option or preset is a one-line ``TrainConfigError``;
* every report step: run through the report driver on a tiny trajectory, its table rows equal
  the step's own ``run`` called directly, and a step with an HTML section puts it in the
  report (``slow``: one report over every step);
* every CLI command: ``--help`` fits 80 columns, an unknown flag and a non-number given to a
  numeric flag exit with 2 and name the flag, without a traceback;
* the light name listings the CLI help reads equal the imported registries.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from safetygeo.training import TrainConfig, Trajectory, available_methods, get_method, train
from safetygeo.training.errors import TrainConfigError

METHODS = available_methods()


# ----------------------------------------------------------------------------- methods
def _toy():
    from safetygeo.toy.train import ToyRecipe
    from safetygeo.toy.world import ToyWorld

    return ToyWorld(0), ToyRecipe(d_model=32, n_layers=2, n_heads=2, d_ff=64)


def _contract_run(name: str):
    """(method factory, data, TrainConfig, fresh-model factory) of a 4-step toy run."""
    from safetygeo.toy.stages import method_run, resolve
    from safetygeo.toy.train import toy_model

    found = method_run(name)
    assert found is not None, (f"method {name!r} has no toy run: add a row for it to "
                               "safetygeo/toy/stages.py (TOY_STAGES or TOY_EXTRA_RUNS)")
    _, row = found
    world, recipe = _toy()
    options = {**resolve(row.options, recipe), **resolve(row.smoke, recipe)}
    extra = {k: v for k, v in resolve(row.train, recipe).items()
             if k not in ("batch_size", "save_every")}
    cfg = TrainConfig(**{**dict(lr=1e-3, max_steps=4, batch_size=2, save_every=2, log_every=1,
                                max_length=64, seed=0, warmup_steps=0), **extra})
    return (lambda: get_method(name, **options), row.data(world, recipe), cfg,
            lambda: toy_model(world, recipe, seed=0))


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _json_state(state: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_resumes_and_round_trips_its_state(name: str, tmp_path: Path) -> None:
    method, data, cfg, fresh = _contract_run(name)
    init = fresh()
    full, m_full = fresh(), method()
    t_full = train(full, m_full, data, out=tmp_path / "full", config=cfg, progress=False)
    assert t_full.steps == [2, 4] and t_full.method == name
    losses = t_full.losses()
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    assert not _state_equal(init.model, full.model), "four optimizer steps changed nothing"

    # killed after step 2 (the later checkpoint gone), resumed: the uninterrupted run
    out = tmp_path / "killed"
    shutil.copytree(t_full.path, out)
    shutil.rmtree(out / "step-000004")
    res, m_res = fresh(), method()
    t_res = train(res, m_res, data, out=out, config=cfg, progress=False)
    assert _state_equal(full.model, res.model)
    assert t_res.losses() == losses
    assert Trajectory.load(out).steps == [2, 4]

    # the method's state: JSON / tensors only, and a save / load round trip keeps it
    state = m_full.state_dict()
    assert all(isinstance(v, torch.Tensor) or json.dumps(v) for v in state.values())
    other = method()  # restored after setup on the same data, as a resumed run does
    other.setup(res, other.records(other.split_data(data)), cfg)
    other.load_state_dict(state)
    assert json.dumps(_json_state(other.state_dict()), sort_keys=True, default=str) == \
        json.dumps(_json_state(state), sort_keys=True, default=str)
    assert json.dumps(_json_state(m_res.state_dict()), sort_keys=True, default=str) == \
        json.dumps(_json_state(state), sort_keys=True, default=str)


@pytest.mark.parametrize("name", METHODS)
def test_method_config_round_trips_and_bad_options_are_named(name: str) -> None:
    m = get_method(name)
    described = json.loads(json.dumps(m.describe()))
    assert described["name"] == name
    assert get_method(name, described["config"]).describe() == described
    with pytest.raises(TrainConfigError, match="no_such_option") as exc:
        get_method(name, no_such_option=1)
    assert "\n" not in str(exc.value)
    with pytest.raises(TrainConfigError, match="preset") as exc:
        get_method(name, preset="no-such-preset")
    assert "\n" not in str(exc.value)
    assert set(m.required_roles) <= set(m.roles)


def test_a_new_method_is_one_class_and_one_toy_row(monkeypatch, tmp_path: Path) -> None:
    """The contract picks up a method defined elsewhere with no other change than its class
    and its toy row (and without the row it says where to add one)."""
    from safetygeo.data.records import as_records
    from safetygeo.toy import stages
    from safetygeo.training import method as method_mod
    from safetygeo.training.method import register_method
    from safetygeo.training.methods.sft import SupervisedMethod

    monkeypatch.setattr(method_mod, "_REGISTRY", dict(method_mod._REGISTRY))  # no leak

    @register_method
    class Echo(SupervisedMethod):
        name = "contract_echo"
        roles = ("train",)
        required_roles = ("train",)

        def records(self, data):
            return {"train": as_records(data["train"], role="train")}

    assert "contract_echo" in available_methods() and "sft" in available_methods()
    with pytest.raises(AssertionError, match="toy/stages.py"):
        _contract_run("contract_echo")
    monkeypatch.setitem(stages.TOY_EXTRA_RUNS, "contract_echo",
                        stages.ToyStage("contract_echo", "base", stages.base_data, 4, 1e-3))
    test_method_trains_resumes_and_round_trips_its_state("contract_echo", tmp_path)
    test_method_config_round_trips_and_bad_options_are_named("contract_echo")


def test_every_toy_row_names_a_registered_method() -> None:
    from safetygeo.toy.stages import TOY_EXTRA_RUNS, TOY_STAGES

    for stage, row in {**TOY_STAGES, **TOY_EXTRA_RUNS}.items():
        assert row.method in METHODS, f"toy row {stage!r}: no method {row.method!r}"
        assert row.start is None or row.start in TOY_STAGES, stage


def test_every_real_row_names_a_registered_method_and_builds_its_config() -> None:
    """Every trained row of the real world resolves to a method instance and a LoRA
    TrainConfig (options valid for the method), and its lineage reaches the shipped model."""
    from safetygeo.real.stages import REAL_STAGES
    from safetygeo.real.train import RealRecipe, method_and_config, stage_recipe

    for stage, row in REAL_STAGES.items():
        node: str | None = stage
        while node is not None:
            node = REAL_STAGES[node].start
        if row.data is None:
            assert row.start is None, stage
            continue
        assert row.method in METHODS, f"real row {stage!r}: no method {row.method!r}"
        method, cfg = method_and_config(stage, RealRecipe(), 0)
        assert method.name == row.method and cfg.lora is not None, stage
        assert f"{stage}_steps" in stage_recipe(stage, RealRecipe()) or stage == "attacked"


# ----------------------------------------------------------------------------- light listings
def test_cli_listings_equal_the_registries() -> None:
    from safetygeo.cli.common import registry_names
    from safetygeo.real.stages import REAL_STAGES, real_defense_stages
    from safetygeo.toy.stages import TOY_STAGES, defense_stages

    assert registry_names("methods") == METHODS
    assert registry_names("toy_stages") == tuple(TOY_STAGES)
    assert registry_names("toy_defenses") == defense_stages()
    assert registry_names("real_stages") == tuple(REAL_STAGES)
    assert registry_names("real_defenses") == real_defense_stages()


def test_the_cli_help_reads_the_registries_without_importing_torch() -> None:
    """Why the listings are read from the sources: ``safetygeo --help`` stays light."""
    import subprocess
    import sys

    code = ("import sys, safetygeo.cli; "
            "print(any(m in sys.modules for m in ('torch', 'transformers')))")
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "False"


def test_every_train_config_field_is_a_documented_flag() -> None:
    import dataclasses

    from safetygeo.cli.common import field_docs
    from safetygeo.cli.train import _NOT_FLAGS, _TRAIN_FLAGS
    from safetygeo.training.config import LoraSpec

    paths = {path for path, _ in _TRAIN_FLAGS.values()}
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NOT_FLAGS:
            continue
        if f.name == "lora":
            assert {("lora", g.name) for g in dataclasses.fields(LoraSpec)} <= paths
        else:
            assert (f.name,) in paths
            assert field_docs(TrainConfig).get(f.name), f"TrainConfig.{f.name} has no doc"


# ----------------------------------------------------------------------------- CLI commands
def _group_commands() -> dict:
    import typer

    from safetygeo.cli import app

    return dict(getattr(typer.main.get_command(app), "commands"))  # noqa: B009  (a group)


def _commands() -> list[str]:
    return sorted(_group_commands())


COMMANDS = _commands()


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from safetygeo.cli import app

    return CliRunner().invoke(app, args, env={"COLUMNS": "80", "TERM": "dumb"})


def _command(name: str):
    return _group_commands()[name]


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_fits_80_columns(name: str) -> None:
    res = _invoke([name, "--help"])
    assert res.exit_code == 0, res.output
    wide = [line for line in res.output.splitlines() if len(line) > 80]
    assert not wide, "\n".join(wide)


def _required_args(name: str) -> list[str]:
    cmd = _command(name)
    return ["M" for p in cmd.params if p.param_type_name == "argument" and p.required]


@pytest.mark.parametrize("name", COMMANDS)
def test_command_bad_flags_are_one_named_error(name: str, monkeypatch) -> None:
    import safetygeo.cli.common as common

    monkeypatch.setattr(common, "load_handle", lambda *a, **k: pytest.fail("model loaded"))
    cases = [("--no-such-flag", [])]
    numeric = [p for p in _command(name).params if p.param_type_name == "option"
               and p.type_descriptor.annotation in (int, float) and not p.multiple]
    if numeric:
        cases.append((numeric[0].opts[0], ["not-a-number"]))
    for flag, value in cases:
        res = _invoke([name, *_required_args(name), flag, *value])
        text = " ".join(res.output.split())
        assert res.exit_code == 2, res.output
        assert flag in text, res.output
        assert "Traceback" not in res.output
        errors = [line for line in res.output.splitlines() if "rror" in line or flag in line]
        assert 1 <= len(errors) <= 2, res.output  # the error and at most its flag's line


# ----------------------------------------------------------------------------- report steps
def _steps() -> list[str]:
    from safetygeo.reports.registry import step_names

    return list(step_names())


STEPS = _steps()

#: The smallest settings of the built-in steps (a new step runs with its defaults unless it
#: is listed here; keys a step does not have are dropped).
_SMOKE = {"carriers": {"test_top_k": 1}, "rank": {"n_boot": 10}, "drift": {"n_boot": 10},
          "coupling": {"n_boot": 10}, "ablation": {"nulls": {"k": 2}},
          "behavior": {"max_new_tokens": 4, "n_boot": 10},
          "entropy": {"max_new_tokens": 4, "n_boot": 10}, "refusal_dimension": {"nulls": {"k": 2}},
          "gradients": {"n_examples": 2, "max_length": 64},
          "transfer": {"source": "sft@4", "n_prompts": 1, "max_new_tokens": 4, "n_boot": 10,
                       "gcg": {"num_steps": 1, "search_width": 4, "topk": 2}}}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory):
    """One report with every registered step over a 4-step SFT trajectory of a tiny toy
    model (one checkpoint: step 4), with the smallest settings the steps take."""
    import dataclasses

    from safetygeo.reports import CheckpointSelection, Protocol, run_report
    from safetygeo.reports.registry import get_step
    from safetygeo.toy.report import toy_protocol

    root = tmp_path_factory.mktemp("contract-report")
    method, data, cfg, fresh = _contract_run("sft")
    traj = train(fresh(), method(), data, out=root / "sft", config=cfg, progress=False)
    p = toy_protocol(transfer_source=None)
    p = p.replace(sets=dataclasses.replace(p.sets, limit=6),
                  checkpoints=CheckpointSelection(base=False, steps=(4,)))
    changes = {}
    for name in STEPS:
        fields = {f.name for f in dataclasses.fields(get_step(name).settings)}
        base = dict(_SMOKE.get(name, {}))
        if name == "transfer":
            base.update({k: v for k, v in toy_protocol().step("transfer").__dict__.items()
                         if k in ("target", "judge")})
            base["gcg"] = {**base["gcg"], "suffix_init": "the the the"}
        changes[name] = {k: v for k, v in base.items() if k in fields}
    p = p.with_steps(**changes)
    assert isinstance(p, Protocol) and set(p.step_names) == set(STEPS)
    result = run_report([traj.path], root / "out", p)
    return result, p, traj


def _direct_rows(result, protocol, traj, name: str) -> list[dict]:
    """Step ``name`` (and what it needs) run directly on the report's checkpoint: the rows
    of its preparation (when it has one: the source is the same checkpoint) and its run."""
    from safetygeo.reports.jobs import CheckpointTarget
    from safetygeo.reports.registry import CheckpointContext, StepResult, clean_row, get_step

    target = CheckpointTarget(trajectory=str(result.table.trajectory.dropna().iloc[0]),
                              path=str(traj.path), step=4)
    order = []

    def visit(n: str) -> None:
        for dep in get_step(n).needs:
            visit(dep)
        if n not in order:
            order.append(n)

    visit(name)
    prepared = {}
    if get_step(name).prepare is not None:  # the source is this same checkpoint
        src = CheckpointContext(target, result.sets, protocol.load)
        out = get_step(name).prepare(src, protocol.step(name))
        prepared[name] = StepResult(out.rows, out.data, out.files)
        rows_prepared = [clean_row(r, name) for r in out.rows]
    else:
        rows_prepared = []
    ctx = CheckpointContext(target, result.sets, protocol.load, prepared=prepared)
    rows: list[dict] = []
    for n in order:
        out = get_step(n).run(ctx, protocol.step(n))
        ctx.add_result(n, StepResult(out.rows, out.data, out.files))
        if n == name:
            rows = [clean_row(r, n) for r in out.rows]
    return rows_prepared + rows


def _same(a, b) -> bool:
    import numbers

    import pandas as pd

    a, b = ((float("nan") if v is None or v is pd.NA else float(v)
             if isinstance(v, numbers.Real) and not isinstance(v, bool) else v) for v in (a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("name", STEPS)
def test_step_rows_equal_its_direct_run_and_html_has_its_section(name, tiny_report) -> None:
    import html as html_lib

    from safetygeo.reports.registry import get_step
    from safetygeo.reports.trajectory_html import section_title

    torch.set_num_threads(1)
    result, protocol, traj = tiny_report
    st = result.status[result.status.protocol_step == name]
    assert len(st) and set(st.status) <= {"computed", "cached"}, st.to_dict("records")
    mine = result.table[(result.table.protocol_step == name) & (result.table.step == 4)]
    direct = _direct_rows(result, protocol, traj, name)
    assert direct or get_step(name).finalize is not None, f"step {name!r} returned no rows"
    keys = ("metric", "layer", "position", "set", "method")
    compared = 0
    for row in direct:
        sel = mine
        for k in keys:
            if row.get(k) is not None:
                sel = sel[sel[k] == row[k]]
        assert len(sel) >= 1, (name, row)
        got = sel.iloc[0]
        for k, v in row.items():
            if k in keys or v is None:
                continue
            assert _same(v, got[k]), (name, k, v, got[k])
            compared += k == "value"
    assert compared == len(direct), (name, compared, len(direct))  # every value compared
    if get_step(name).finalize is None:
        assert len(mine) == len(direct), (name, len(mine), len(direct))
    page = Path(result.html).read_text(encoding="utf-8")
    assert f">{html_lib.escape(section_title(name))}<" in page, section_title(name)


# ----------------------------------------------------------------------------- interventions
def _interventions() -> dict:
    """Every concrete Intervention class with a small example of it (``d``: d_model)."""
    from safetygeo.interventions.edits import (
        KernelAbliteration,
        MagnitudePreservingAblation,
        WindowAblation,
    )
    from safetygeo.interventions.intervention import (
        DirectionAblation,
        DirectionAddition,
        HeadAblation,
        SubspaceAblation,
    )

    return {
        DirectionAblation: lambda d: DirectionAblation(torch.randn(d)),
        DirectionAddition: lambda d: DirectionAddition(torch.randn(d) * 4, 1, 2.0),
        SubspaceAblation: lambda d: SubspaceAblation(torch.randn(2, d)),
        HeadAblation: lambda d: HeadAblation(1, (0, 2)),
        WindowAblation: lambda d: WindowAblation(torch.randn(2, d), strength=1.0, layers=(1,)),
        MagnitudePreservingAblation: lambda d: MagnitudePreservingAblation(torch.randn(1, d),
                                                                           layers=(0, 1)),
        KernelAbliteration: lambda d: KernelAbliteration(torch.randn(3, d)),  # 2 blocks + 1
    }


def _concrete(cls: type) -> set:
    import inspect

    out = set()
    for sub in cls.__subclasses__():
        if not inspect.isabstract(sub) and sub.__module__.startswith("safetygeo."):
            out.add(sub)
        out |= _concrete(sub)
    return out


def test_every_intervention_has_a_contract_example() -> None:
    from safetygeo.interventions.intervention import Intervention

    missing = sorted(c.__name__ for c in _concrete(Intervention) - set(_interventions()))
    assert not missing, f"add an example of {missing} to _interventions() in {__file__}"


@pytest.mark.parametrize("cls", sorted(_interventions(), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_intervention_applies_itself_leaves_no_hooks_and_its_stack_starts_with_it(cls) -> None:
    from safetygeo.interventions.nulls import NullSpec
    from safetygeo.models import load_model
    from safetygeo.models.tiny import tiny_model_and_tokenizer

    h = load_model(tiny_model_and_tokenizer("llama", n_layers=2, d_model=32, n_heads=4))
    iv = _interventions()[cls](h.d_model)
    ids = torch.tensor([[1, 5, 7, 9, 11], [3, 4, 8, 2, 6]])

    def logits() -> torch.Tensor:
        with torch.no_grad():
            return h.model(input_ids=ids).logits

    base = logits()
    with iv.apply(h):
        edited = logits()
    assert not torch.allclose(base, edited), "the intervention changed nothing"
    assert torch.equal(logits(), base), "hooks left behind"
    with pytest.raises(RuntimeError, match="boom"), iv.apply(h):
        raise RuntimeError("boom")
    assert torch.equal(logits(), base), "hooks left behind after an exception"
    stack = iv.variants(h, NullSpec(k=2, seed=0))
    assert stack.size >= 2 and stack.family
    # variants ride along the batch (one per row), or one at a time for weight edits
    rows = (lambda i: [i]) if iv.one_variant_per_pass else (lambda i: [i, i])
    with stack.apply(rows(0)):
        both = logits()
    torch.testing.assert_close(both, edited, rtol=1e-5, atol=1e-5)
    with stack.apply(rows(1)):
        assert not torch.allclose(logits(), edited), "the null equals the real intervention"
    assert set(iv.columns()) >= {"op", "site", "layer"}
