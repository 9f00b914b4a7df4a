"""Trajectory reports on the toy zoo (refusal SFT, R2D2, harmful SFT): the table equals
direct API calls, reruns compute nothing, a new checkpoint computes only itself, a changed
step recomputes only itself (and what needs it), damaged checkpoints are reported and
skipped, a killed report resumes, Ray gives the in-process table, user text is escaped and
the HTML renders in a real browser."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safetygeo.reports import TABLE_COLUMNS, run_report
from tests.reports.conftest import small_protocol

pytestmark = pytest.mark.slow


def _rows(table: pd.DataFrame, checkpoint: str, metric: str, **eq: object) -> pd.DataFrame:
    t = table[(table.checkpoint == checkpoint) & (table.metric == metric)]
    for k, v in eq.items():
        t = t[t[k] == v]
    return t


def test_table_layout_and_every_checkpoint(report) -> None:
    t = report.table
    assert list(t.columns)[:10] == ["trajectory", "step", "layer", "position", "metric", "value",
                                    "ci_low", "ci_high", "p", "q"]
    assert list(t.columns) == list(TABLE_COLUMNS)
    got = sorted(set(t.checkpoint))
    assert got == sorted(["anchor-s0@0", "anchor-s0@300", "attacked-s0@0", "attacked-s0@30",
                          "r2d2-s0@0", "r2d2-s0@30", "r2d2-s0@120"])
    assert not len(report.failures), report.failures
    assert set(t.protocol_step) == {"carriers", "rank", "drift", "coupling", "ablation",
                                    "behavior", "transfer"}
    # p from the nulls, q by BH per metric across the report
    ab = t[t.metric == "d_refusal_harmful"].dropna(subset=["p"])
    assert len(ab) >= 2 and (ab.q >= ab.p - 1e-12).all()
    on_disk = pd.read_parquet(report.out / "table.parquet")
    pd.testing.assert_frame_equal(on_disk, t, check_dtype=False)
    csv = pd.read_csv(report.out / "table.csv")
    assert list(csv.columns) == list(TABLE_COLUMNS) and len(csv) == len(t)
    for name in ("status.csv", "protocol.yaml", "report.json", "report.html"):
        assert (report.out / name).is_file()


def test_one_checkpoint_equals_direct_api_calls(report, toy_zoo) -> None:
    """Every step of the table for anchor-s0@300, recomputed with the public API."""
    import torch

    from safetygeo.activations import extract_activations
    from safetygeo.behavior import GenerationSettings, evaluate_behavior
    from safetygeo.causal import CarrierThresholds, intervention_effect, select_refusal_carrier
    from safetygeo.geometry import carrier_drift, carrier_rank, geometric_coupling
    from safetygeo.interventions import NullSpec
    from safetygeo.reports.sources import resolve_judge, resolve_sets
    from safetygeo.training import Trajectory

    torch.set_num_threads(1)
    p, t, ck = small_protocol(), report.table, "anchor-s0@300"
    sets = resolve_sets(p.sets)
    traj = Trajectory.load(toy_zoo["anchor"])
    h = traj.load_checkpoint(300, dtype="float32")
    c = p.step("carriers")
    sel = select_refusal_carrier(
        h, sets.splits("harmful"), sets.splits("harmless"), scoring=c.scoring(),
        thresholds=CarrierThresholds(c.max_layer_frac, c.max_kl, c.min_induce, c.min_effect),
        layers=list(c.layers), batch_size=p.load.batch_size, max_variants=c.max_variants,
        test_top_k=c.test_top_k, progress=False)
    assert sel.chosen is not None
    row = _rows(t, ck, "carrier_layer").iloc[0]
    assert (row.value, row.position) == (sel.chosen[0], sel.chosen[1])
    byp = _rows(t, ck, "bypass").set_index(["layer", "position"]).value
    want = sel.candidates.set_index(["layer", "position"]).bypass
    assert np.allclose(byp.loc[want.index].to_numpy(dtype=float), want.to_numpy(), rtol=1e-9)
    assert math.isclose(_rows(t, ck, "test_bypass", layer=sel.chosen[0]).value.iloc[0],
                        float(sel.candidates.set_index(["layer", "position"]).test_bypass.loc[sel.chosen]),
                        rel_tol=1e-9)

    kw = dict(layers="all", positions="t_inst+post_instruction", keep_vectors=True,
              batch_size=p.load.batch_size, progress=False)
    a = extract_activations(h, sets.split("harmful", "test"), **kw)
    b = extract_activations(h, sets.split("harmless", "test"), **kw)
    er = carrier_rank(a, b, layer=sel.layer, positions=["eoi-2", "eoi-1"], n_boot=20)["erank"]
    got = _rows(t, ck, "erank").iloc[0]
    assert (got.value, got.ci_low, got.ci_high, got.layer) == pytest.approx(
        (er.value, er.ci_low, er.ci_high, sel.layer), rel=1e-9)

    cp = geometric_coupling(a, b, refusal_position="eoi-1", n_boot=20).set_index("layer")
    got_cp = _rows(t, ck, "hr_cos").set_index("layer")
    for layer in (3, 5, 8):
        assert got_cp.value.loc[layer] == pytest.approx(cp.cos.loc[layer], rel=1e-9)
        assert got_cp.ci_high.loc[layer] == pytest.approx(cp.ci_high.loc[layer], rel=1e-9)

    eff = intervention_effect(h, sel.vector, "ablate", harmful=sets.split("harmful", "test"),
                              harmless=sets.split("harmless", "test"),
                              nulls=NullSpec(k=4, seed=0, max_variants=16), scoring=sel.scoring,
                              batch_size=p.load.batch_size)
    for m, e in eff.items():
        got = _rows(t, ck, m, protocol_step="ablation").iloc[0]
        assert (got.value, got.p, got.null_q025) == pytest.approx(
            (e.real, e.p, e.null_quantile(0.025)), rel=1e-9)
        assert got.p_tail == pytest.approx(e.p_tail, rel=1e-9, nan_ok=True)

    beh = {n: ps for n, (_, ps) in sets.behavior.items()}
    roles = {n: r for n, (r, _) in sets.behavior.items()}
    rep = evaluate_behavior(h, beh, roles=roles, judge=resolve_judge("toy"),
                            settings=GenerationSettings(max_new_tokens=12, seed=0),
                            batch_size=p.load.batch_size, n_boot=20, progress=False)
    m = rep.metrics
    for (set_, metric, method) in (("harmful", "asr", "ours"), ("harmful", "asr", "judge_score"),
                                   ("safe", "over_refusal_rate", "ours"),
                                   ("benign", "exact_match", "ours")):
        want = m[(m.set == set_) & (m.metric == metric) & (m.method == method)].iloc[0]
        got = _rows(t, ck, metric, set=set_, method=method).iloc[0]
        assert (got.value, got.ci_low, got.ci_high) == pytest.approx(
            (want.value, want.ci_low, want.ci_high), rel=1e-9)

    # drift against the trajectory's first checkpoint (its base), at layer 5
    h0 = traj.load_checkpoint(0, dtype="float32")
    kw0 = dict(kw, positions="post_instruction")
    ref = (extract_activations(h0, sets.split("harmful", "test"), **kw0),
           extract_activations(h0, sets.split("harmless", "test"), **kw0))
    cur = (extract_activations(h, sets.split("harmful", "test"), **kw0),
           extract_activations(h, sets.split("harmless", "test"), **kw0))
    d = carrier_drift(ref, {"x": cur}, layer=5, n_boot=20)
    got = _rows(t, ck, "drift_angle_deg", layer=5).iloc[0]
    big = d.loc[d.angle_deg.idxmax()]
    assert (got.value, got.ci_low, got.ci_high) == pytest.approx(
        (big.angle_deg, big.ci_low_deg, big.ci_high_deg), rel=1e-6)


def test_rerun_computes_nothing_and_new_checkpoint_only_itself(report) -> None:
    # the fixture's first run had every checkpoint but r2d2-s0@120
    first, full = report.first, report
    assert first.counts["computed"] > 0 and first.counts["failed"] == 0
    new = full.status[full.status.status == "computed"]
    assert set(new.checkpoint) == {"r2d2-s0@120"}, new
    assert full.counts["computed"] == 8  # its 7 steps + its drift comparison
    assert full.counts["models_loaded"] == 1
    again = run_report(full.paths, full.out, small_protocol())
    assert again.counts["computed"] == 0 and again.counts["models_loaded"] == 0
    assert again.counts["cached"] == full.counts["computed"] + full.counts["cached"]
    pd.testing.assert_frame_equal(again.table, full.table)


def test_changed_step_recomputes_only_itself_and_its_dependents(report, tmp_path) -> None:
    out = tmp_path / "rep"
    shutil.copytree(report.out, out)
    p = small_protocol().with_steps(behavior={"max_new_tokens": 10})
    r = run_report(report.paths, out, p, html=False)
    done = r.status[r.status.status == "computed"]
    assert set(done.protocol_step) == {"behavior"} and r.counts["failed"] == 0
    assert len(done) == 6  # 7 checkpoints, two of them with the same content (the bases)
    p2 = small_protocol().with_steps(carriers={"test_top_k": 2})
    r2 = run_report(report.paths, out, p2, html=False)
    assert set(r2.status[r2.status.status == "computed"].protocol_step) == {
        "carriers", "rank", "ablation"}


def _copy_trajectory(src: Path, dst: Path, steps: list[int]) -> Path:
    dst.mkdir(parents=True)
    shutil.copy2(src / "trajectory.json", dst / "trajectory.json")
    shutil.copytree(src / "base", dst / "base")
    for s in steps:
        name = f"step-{s:06d}"
        shutil.copytree(src / name, dst / name,
                        ignore=shutil.ignore_patterns("optimizer.pt", "scheduler.pt", "rng_state*"))
        import json

        marker = json.loads((dst / name / "checkpoint.json").read_text())
        for f in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            marker["files"].pop(f, None)
        (dst / name / "checkpoint.json").write_text(json.dumps(marker))
    return dst


def test_damaged_checkpoint_is_reported_and_skipped(toy_zoo, tmp_path) -> None:
    traj = _copy_trajectory(toy_zoo["attacked"], tmp_path / "attacked-copy", [10, 20, 30])
    w = traj / "step-000020" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])  # truncated: damaged
    cfg = traj / "step-000030" / "config.json"
    cfg.write_text("x" * len(cfg.read_bytes()))  # same size, unreadable: fails when loaded
    p = small_protocol((10, 20, 30), base=False).with_steps(transfer=None, drift=None,
                                                             ablation=None, behavior=None)
    r = run_report([traj], tmp_path / "out", p)
    fails = r.failures.set_index("step")
    assert set(fails.index) == {20, 30}
    assert "damaged" in fails.error.loc[20]
    assert "config" in " ".join(fails.loc[[30]].error).lower() or "load" in " ".join(
        fails.loc[[30]].error)
    ok = r.table[r.table.step == 10]
    assert len(ok) and (ok.metric != "error").all()
    errors = r.table[r.table.metric == "error"]
    assert set(errors.step) == {20, 30}
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Failed checkpoints" in html and "damaged checkpoint" in html


def test_killed_report_resumes(toy_zoo, tmp_path) -> None:
    """A step interrupted on the second checkpoint: what was computed before is kept."""
    from dataclasses import dataclass

    from safetygeo.reports import ProtocolStep, StepOutput, register_step
    from safetygeo.reports.registry import unregister_step

    @dataclass(frozen=True)
    class Boom:
        at: int = 30

    def run(ctx, s):
        if ctx.target.step == s.at:
            raise KeyboardInterrupt  # the user presses Ctrl-C (not an Exception: not caught)
        return StepOutput([{"metric": "ok", "value": 1.0}])

    register_step(ProtocolStep("boom_test", Boom, run, default=False, order=200))
    try:
        base = small_protocol((15, 30), base=False).with_steps(
            carriers=None, rank=None, drift=None, coupling=None, ablation=None, transfer=None)
        out = tmp_path / "killed"
        with pytest.raises(KeyboardInterrupt):
            run_report([toy_zoo["attacked"]], out, base.with_steps(boom_test={}), html=False)
    finally:
        unregister_step("boom_test")
    r = run_report([toy_zoo["attacked"]], out, base, html=False)
    st = r.status.set_index("checkpoint").status
    # both checkpoints' behaviour was cached as soon as computed, before the interruption
    assert r.counts["computed"] == 0 and r.counts["cached"] == 2, r.status
    assert set(st) == {"cached"}


def test_user_text_is_escaped_in_the_html(toy_zoo, tmp_path) -> None:
    from safetygeo.reports import SetsConfig

    prompts = tmp_path / "evil.txt"
    prompts.write_text("<script>alert('x')</script> tell me how to build a bomb\n"
                       "please add 2 and 3\n")
    p = small_protocol((300,), base=False).replace(
        sets=SetsConfig(harmful="toy:harmful", harmless="toy:harmless", limit=12,
                        behavior={"harmful": f"lines={prompts}"}))
    p = p.with_steps(carriers=None, rank=None, drift=None, coupling=None, ablation=None,
                     transfer=None)
    r = run_report([toy_zoo["anchor"]], tmp_path / "out", p, title="<b>title</b>")
    html = Path(r.html).read_text()
    assert "&lt;script&gt;alert(" in html and "<script>alert(" not in html
    assert "&lt;b&gt;title&lt;/b&gt;" in html and "<b>title" not in html
    assert html.count("<script type=\"text/javascript\">") <= 1  # plotly.js inlined once
    assert "<script src=" not in html  # self-contained: nothing fetched


def test_ray_executor_gives_the_in_process_table(report, toy_zoo, ray_executor, tmp_path) -> None:
    # run_report(executor="ray") finds the session's local instance (2 workers) running
    p = small_protocol((30,))  # attacked-s0: base + 30 (3 jobs with the transfer source)
    r = run_report([toy_zoo["attacked"]], tmp_path / "ray", p, executor="ray", workers=2,
                   html=False)
    assert r.executor["executor"] == "ray" and r.counts["failed"] == 0, r.failures
    want = report.table[report.table.trajectory == "attacked-s0"].reset_index(drop=True)
    got = r.table.drop(columns=["q"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want.drop(columns=["q"]), check_exact=False, rtol=1e-6)
    # and the local executor reads what Ray computed: nothing left to do
    again = run_report([toy_zoo["attacked"]], tmp_path / "ray", p, html=False)
    assert again.counts["computed"] == 0


def test_html_renders_in_headless_chromium(report, tmp_path) -> None:
    from safetygeo.reports.browser import browser_check, find_chromium

    if find_chromium() is None:
        if os.environ.get("SAFETYGEO_CI"):
            pytest.fail("chromium is not installed, but CI must run the browser check "
                        "(.ci/run installs it with apt-get)")
        pytest.skip("chromium is not installed (apt-get install chromium); the browser check "
                    "runs in CI")
    shot = tmp_path / "report.png"
    check = browser_check(report.html, screenshot=shot)
    assert check.errors == []
    assert check.figures >= 9 and check.rendered == check.figures
    assert shot.stat().st_size > 10_000


def test_static_export_through_kaleido(report, tmp_path) -> None:
    pytest.importorskip("kaleido", reason="static export needs kaleido (safetygeo[static])")
    from safetygeo.reports import trajectory_figures as tf
    from safetygeo.reports.browser import find_chromium

    if find_chromium() is None:
        pytest.skip("kaleido needs a Chrome / Chromium")
    figs = {"carrier_layer": tf.carrier_layer_figure(report.table),
            "drift": tf.drift_figure(report.table)}
    paths = tf.export_figures(figs, tmp_path, formats=("png", "svg"))
    assert sorted(p.name for p in paths) == ["carrier_layer.png", "carrier_layer.svg",
                                             "drift.png", "drift.svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert (tmp_path / "drift.svg").read_text().lstrip().startswith("<svg")


def test_named_drift_reference_and_the_toy_default(toy_zoo, tmp_path) -> None:
    from safetygeo.reports import Protocol
    from safetygeo.reports.protocol import default_protocol

    assert default_protocol([toy_zoo["attacked"], toy_zoo["r2d2"]]) == Protocol.toy()
    assert default_protocol([tmp_path]) == Protocol.default()
    p = small_protocol((10,)).with_steps(
        carriers=None, rank=None, coupling=None, ablation=None, behavior=None, transfer=None,
        drift={"reference": "anchor-s0@300", "n_boot": 20, "layers": [4, 5]})
    r = run_report([toy_zoo["attacked"]], tmp_path / "o", p, html=False)
    assert r.counts["failed"] == 0, r.failures
    d = r.table[r.table.metric == "drift_angle_deg"]
    # the attack starts from the anchor's last checkpoint: no drift at its step 0
    assert (d[d.step == 0].value.abs() < 1e-4).all() and (d[d.step == 10].value > 1).all()
    assert set(r.table.trajectory) == {"attacked-s0"}  # the reference is not a row itself
