"""R2D2: its losses against independent references, the pool's refresh / reset schedule,
training lowering the objective, bitwise resume, checkpoint round trips, bad input.

References: exact decimal arithmetic at 1000 digits (softmax, p(target), −log(1 − p)), Hugging Face's own
``labels=`` loss on single unpadded sequences, re-encoding the adversarial prompt *text*
with ``ModelHandle.encode``, :func:`~safetygeo.attacks.gcg.candidate_losses` as an
independent measurement of GCG losses, and an uninterrupted run for resume.
"""

from __future__ import annotations

import decimal
import functools
import shutil

import pytest
import torch

from safetygeo.data import PromptSet
from safetygeo.training import (
    DatasetFormatError,
    EmptyDatasetError,
    StepContext,
    TrainConfig,
    TrainConfigError,
    TrainingError,
    get_method,
    train,
)
from safetygeo.data.records import pad_right
from safetygeo.attacks.gcg import candidate_losses
from safetygeo.training.methods.r2d2 import (
    R2D2,
    R2D2Config,
    harmful_records,
    log1mexp,
    sequence_away_loss,
    target_logprobs,
    token_away_loss,
)
from tests.training.conftest import HARMFUL_PAIRS, fresh_handle

CFG = TrainConfig(max_steps=4, save_every=2, batch_size=2, lr=1e-3, seed=0,
                  lr_scheduler="constant")


def _data(toy):
    return {"utility": toy.HARMLESS, "harmful": toy.HARMFUL_PAIRS}


def _setup(toy, config=None, **overrides):
    h = toy.fresh()
    m = R2D2(config, preset="cpu", **overrides) if config is None else R2D2(config, **overrides)
    rows = m.setup(h, m.records(m.split_data(_data(toy))), CFG)
    return h, m, rows


def _ctx(h, step, micro=0):
    return StepContext(h, h.model, step, micro, CFG)


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


# ----------------------------------------------------------------------------- references
D = decimal.Decimal
_CTX = decimal.Context(prec=1000)  # 1 - p is exact even when p = 1 - 1e-300


def _ref_row(logits: torch.Tensor, labels: list[int]):
    """Decimal reference: per scored position (p_t, 1 - p_t) and the sequence p, from the
    exact float64 logits (position t predicts labels[t + 1])."""
    per = []
    with decimal.localcontext(_CTX):
        for t in range(len(labels) - 1):
            y = labels[t + 1]
            if y == -100:
                continue
            e = [D(float(v)).exp() for v in logits[t]]
            total = sum(e)
            per.append((e[y] / total, (total - e[y]) / total))
        p = D(1)
        for pt, _ in per:
            p *= pt
    return per, p


def _ln(x) -> float:
    with decimal.localcontext(_CTX):
        assert x > 0
        return float(x.ln())


def _regime_logits(gap: float, seed: int = 0):
    """[2, 4, 7] float64 logits whose labelled tokens lead the rest by ``gap`` nats."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 7, generator=g, dtype=torch.float64)
    labels = torch.tensor([[-100, 3, 5, 1], [-100, -100, 2, 6]])
    for b in range(2):
        for t in range(3):
            y = int(labels[b, t + 1])
            if y != -100:
                logits[b, t, y] = logits[b, t].max() + gap
    return logits, labels


def test_log1mexp_matches_exact_arithmetic_across_regimes():
    xs = [-1e-300, -1e-30, -1e-8, -1e-3, -0.5, -0.7, -1.0, -20.0, -700.0]
    got = log1mexp(torch.tensor(xs, dtype=torch.float64))
    for x, v in zip(xs, got.tolist()):
        with decimal.localcontext(_CTX):
            ref = _ln(1 - D(x).exp())
        assert abs(v - ref) <= 1e-12 * max(1.0, abs(ref)), (x, v, ref)
    # x = 0 (p = 1 exactly) is capped, not -inf; gradients are finite everywhere
    x = torch.tensor([0.0, -1e-300, -0.69, -0.7, -50.0], dtype=torch.float64, requires_grad=True)
    y = log1mexp(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("gap", [-30.0, 0.0, 8.0, 30.0, 100.0])
def test_sequence_away_loss_matches_exact_arithmetic_from_p_near_0_to_p_near_1(gap):
    logits, labels = _regime_logits(gap)
    away, logp = sequence_away_loss(logits, labels)
    for b in range(2):
        _, p = _ref_row(logits[b], labels[b].tolist())
        with decimal.localcontext(_CTX):
            ref_away, ref_logp = -_ln(1 - p), _ln(p)
        assert abs(float(logp[b]) - ref_logp) <= 1e-12 * max(1.0, abs(ref_logp))
        assert abs(float(away[b]) - ref_away) <= 1e-9 * ref_away, (gap, float(away[b]), ref_away)
    # gradients are finite and push the target logits down (away grows with p)
    x = logits.clone().requires_grad_(True)
    sequence_away_loss(x, labels)[0].sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0, 0, 3] > 0 and x.grad[1, 1, 2] > 0


def test_sequence_away_loss_where_the_naive_float32_formula_fails():
    logits, labels = _regime_logits(30.0)
    # the naive recipe: float32 log_softmax, then -log(1 - exp(sum)) -> inf (p rounds to 1)
    lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(
        -1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1) * (labels[:, 1:] != -100)
    naive = -torch.log(1 - lp.sum(-1).exp())
    assert torch.isinf(naive).all()
    away, _ = sequence_away_loss(logits.float(), labels)  # float32 logits in, float64 inside
    _, p = _ref_row(logits[0].float().double(), labels[0].tolist())
    with decimal.localcontext(_CTX):
        ref = -_ln(1 - p)
    assert torch.isfinite(away).all() and ref > 20  # p = 1 - 1e-11
    assert abs(float(away[0]) - ref) < 1e-9 * ref


def test_sequence_away_gradient_matches_finite_differences():
    for gap in (0.0, 6.0):
        logits, labels = _regime_logits(gap, seed=1)
        x = logits.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda z: sequence_away_loss(z, labels)[0], (x,))


@pytest.mark.parametrize("gap", [-8.0, 0.0, 3.0, 25.0])
def test_token_away_loss_matches_exact_arithmetic_with_the_threshold(gap):
    logits, labels = _regime_logits(gap, seed=2)
    for threshold in (-5.0, -1.0):
        got = float(token_away_loss(logits, labels, threshold))
        terms, n = [], 0
        for b in range(2):
            per, _ = _ref_row(logits[b], labels[b].tolist())
            n += len(per)
            terms += [-_ln(q) if _ln(pt) >= threshold else 0.0 for pt, q in per]
        ref = sum(terms) / n
        assert abs(got - ref) <= 1e-9 * max(ref, 1e-12), (gap, threshold, got, ref)
    logp, log1mp = target_logprobs(logits, labels)
    assert (logp[labels[:, 1:] == -100] == 0).all() and (log1mp[labels[:, 1:] == -100] == 0).all()


# ----------------------------------------------------------------------------- the objective
def test_objective_terms_match_hf_labels_loss_on_reencoded_adversarial_prompts(toy):
    h, m, rows = _setup(toy)
    batch = m.collate(rows[:3])
    total, terms = m.objective(h.model, batch, m.pool)
    away_rows, toward_rows = m.adversarial_rows(m.pool)

    def hf(row):  # Hugging Face's own labels= loss on one unpadded sequence
        x = torch.tensor([row["input_ids"]])
        out = h.model(input_ids=x, labels=torch.tensor([row["labels"]]), use_cache=False)
        n = sum(1 for v in row["labels"][1:] if v != -100)
        return out.loss, n, out.logits

    def token_mean(rs):
        parts = [hf(r)[:2] for r in rs]
        return sum(loss * n for loss, n in parts) / sum(n for _, n in parts)

    with torch.no_grad():
        assert abs(float(terms["utility_ce"]) - float(token_mean(rows[:3]))) < 1e-5
        assert abs(float(terms["toward"]) - float(token_mean(toward_rows))) < 1e-5
        aways = []
        for r in away_rows:  # float64 brute force on HF logits of the unpadded row
            logits = hf(r)[2][0, :-1].double()
            y = torch.tensor(r["labels"][1:])
            keep = y != -100
            lp = torch.log_softmax(logits[keep], -1).gather(-1, y[keep][:, None]).sum()
            aways.append(-torch.log(-torch.expm1(lp)))
        ref_away = sum(aways) / len(aways)
        assert abs(float(terms["away"]) - float(ref_away)) <= 1e-4 * float(ref_away) + 1e-30
        ref_total = terms["utility_ce"] + 0.5 * terms["away"] + 0.5 * terms["toward"]
        assert abs(float(total) - float(ref_total)) < 1e-6
    # the optimized ids are exactly what the adversarial prompt text re-encodes to
    for e, r in zip(m.pool, toward_rows):
        ids = h.encode([e.prompt.instruction + e.item.suffix]).input_ids[0]
        assert r["input_ids"][:len(ids)] == ids
        assert r["labels"][len(ids):] == m._refusal_ids[e.record]
    # the token form is HarmBench code's per-token loss
    mt = R2D2(preset="cpu", away_loss="token")
    mt.setup(h, mt.records(mt.split_data(_data(toy))), CFG)
    ab = pad_right(mt.adversarial_rows(mt.pool)[0], 0)
    with torch.no_grad():
        _, tt = mt.objective(h.model, batch, mt.pool)
        ref = token_away_loss(h.model(**{k: ab[k] for k in ("input_ids", "attention_mask")}).logits,
                              ab["labels"])
    assert abs(float(tt["away"]) - float(ref)) < 1e-6 * max(float(ref), 1e-12)


# ----------------------------------------------------------------------------- the pool
def test_before_step_refreshes_active_items_against_the_current_model(toy):
    h, m, _ = _setup(toy, R2D2Config.cpu_preset(n_update=None, gcg_steps=3, search_width=64))
    before = [e.item.suffix_ids.clone() for e in m.pool]
    start = [float(candidate_losses(h, e.item, e.item.suffix_ids[None])[0][0]) for e in m.pool]
    h.model.train()
    logs = m.before_step(_ctx(h, 0), {})
    assert h.model.training  # mode restored
    assert all(p.grad is None for p in h.model.parameters())  # GCG never writes .grad
    after = [float(candidate_losses(h, e.item, e.item.suffix_ids[None])[0][0]) for e in m.pool]
    assert all(not torch.equal(b, e.item.suffix_ids) for b, e in zip(before, m.pool))
    assert [e.age for e in m.pool] == [3] * len(m.pool)
    assert sum(after) < sum(start)  # measured: mean 6.254 -> 6.236
    # the logged statistics are these measurements
    assert logs["gcg_loss_start"] == pytest.approx(sum(start) / len(start), rel=1e-6)
    assert logs["gcg_loss"] == pytest.approx(sum(after) / len(after), rel=1e-6)
    assert [e.item.loss for e in m.pool] == pytest.approx(after, rel=1e-6)
    assert logs["pool_resets"] == 0 and logs["pool_age"] == 3


def test_reset_reinitializes_exactly_n_reset_items_at_multiples_of_reset_every(toy):
    cfg = R2D2Config.cpu_preset(n_update=None, gcg_steps=0, reset_every=3, n_reset=2)
    h, m, _ = _setup(toy, cfg)
    tok = h.tokenizer
    inits = {tuple(tok(" " + " ".join(["!"] * n), add_special_tokens=False)["input_ids"])
             for n in range(cfg.suffix_len[0], cfg.suffix_len[1] + 1)}
    assert all(tuple(e.item.suffix_ids.tolist()) in inits for e in m.pool)
    # the initial pool draws distinct behaviours while there are enough
    assert len({e.record for e in m.pool}) == len(m.pool)
    for step in range(10):
        prev = [(e.record, e.born, e.item.suffix_ids.clone()) for e in m.pool]
        logs = m.before_step(_ctx(h, step), {})
        fresh = [i for i, e in enumerate(m.pool) if e.born == step and step > 0]
        expected = 2 if step > 0 and step % 3 == 0 else 0
        assert len(fresh) == expected and logs["pool_resets"] == expected, step
        for i, e in enumerate(m.pool):
            if i in fresh:
                assert tuple(e.item.suffix_ids.tolist()) in inits and e.age == 0
                assert e.prompt.instruction == toy.HARMFUL_PAIRS[e.record][0]
            else:  # untouched: no GCG steps, no reset
                assert (e.record, e.born) == prev[i][:2] and torch.equal(e.item.suffix_ids, prev[i][2])
    assert m.n_resets == 6


def test_reset_then_gcg_ages_and_update_subsets(toy):
    h, m, _ = _setup(toy, R2D2Config.cpu_preset(n_update=2, gcg_steps=2, reset_every=2, n_reset=1))
    ages = [0] * 4
    for step in range(5):
        logs = m.before_step(_ctx(h, step), {})
        assert m.before_step(_ctx(h, step, micro=1), {}) == {}  # once per optimizer step
        reset = [i for i, e in enumerate(m.pool) if e.born == step and step > 0]
        assert len(reset) == (1 if step in (2, 4) else 0)
        for i in reset:
            ages[i] = 0
        for i in m.active:
            ages[i] += 2
        assert len(m.active) == 2 and [e.age for e in m.pool] == ages
        assert logs["pool_age"] == sum(ages) / 4
    mm = R2D2(preset="cpu", refresh_every_micro_batch=True)
    mm.setup(h, mm.records(mm.split_data(_data(toy))), CFG)
    mm.before_step(_ctx(h, 0), {})
    logs = mm.before_step(_ctx(h, 0, micro=1), {})
    assert "gcg_loss" in logs and "pool_resets" not in logs
    assert sum(e.age for e in mm.pool) == 2 * 2 * 2


# ----------------------------------------------------------------------------- training
@functools.lru_cache(maxsize=1)
def _attacked_weights(tmp: str) -> dict:
    """The tiny llama after a quick harmful-SFT attack on the targets: p(target) is no
    longer ~0, so the away term matters (on the random model it is ~1e-38)."""
    h = fresh_handle()
    train(h, "harmful_sft", {"harmful": HARMFUL_PAIRS}, out=tmp, progress=False,
          config=TrainConfig(max_steps=25, save_every=25, batch_size=4, lr=1e-2, seed=0,
                             lr_scheduler="constant"))
    return {k: v.clone() for k, v in h.model.state_dict().items()}


@pytest.mark.parametrize("form", ["sequence", "token"])
def test_training_lowers_every_r2d2_term_on_a_fixed_pool(toy, tmp_path_factory, form):
    h = toy.fresh()
    h.model.load_state_dict(_attacked_weights(str(tmp_path_factory.mktemp("attack") / "t")))
    m = R2D2(preset="cpu", away_loss=form)
    batch = m.collate(m.setup(h, m.records(m.split_data(_data(toy))), CFG))
    fixed = list(m.pool)  # train() builds a new pool: these entries and suffixes stay as they are
    fixed_ids = [e.item.suffix_ids.clone() for e in fixed]
    with torch.no_grad():
        before, tb = m.objective(h.model, batch, fixed)
    train(h, m, _data(toy), out=tmp_path_factory.mktemp("r2d2") / "t",
          config=CFG.replace(max_steps=12, save_every=12), progress=False)
    assert all(torch.equal(e.item.suffix_ids, ids) for e, ids in zip(fixed, fixed_ids))
    assert m.gcg_steps_done == 12 * 2 and m.n_resets == 2  # the live pool was refreshed, reset
    with torch.no_grad():
        after, ta = m.objective(h.model, batch, fixed)
    # measured (sequence | token): total 11.62 -> 7.53 | 12.63 -> 7.87; away 0.0152 -> 2e-5 |
    # 2.05 -> 0.20; toward 7.74 -> 5.10 | 5.27; p(target) 0.015 -> ~0
    assert float(after) < float(before) - 2.0, (float(before), float(after))
    assert float(ta["away"]) < 0.2 * float(tb["away"]) and float(tb["away"]) > 0.01
    assert float(ta["toward"]) < float(tb["toward"]) - 1.0
    assert float(ta["utility_ce"]) < float(tb["utility_ce"])
    assert float(ta["p_target"]) < 0.1 * float(tb["p_target"])


def test_resume_from_step_k_equals_uninterrupted_run(toy, tmp_path):
    cfg = CFG.replace(grad_accum=2, max_steps=4, save_every=2)
    method = lambda: R2D2(preset="cpu", reset_every=2)  # noqa: E731 - a reset right at the resume
    full = method()
    h_full = toy.fresh()
    t_full = train(h_full, full, _data(toy), out=tmp_path / "full", config=cfg, progress=False)
    out = tmp_path / "killed"
    shutil.copytree(t_full.path, out)
    shutil.rmtree(out / "step-000004")
    resumed = method()
    h_res = toy.fresh()
    t_res = train(h_res, resumed, _data(toy), out=out, config=cfg, progress=False)
    assert toy.state_equal(h_full.model, h_res.model)
    assert t_res.losses() == t_full.losses()
    _same_state(full.state_dict(), resumed.state_dict())
    assert full.n_resets == 1  # the reset at step 2 ran after the resume point
    assert t_res.checkpoint(4).metrics == t_full.checkpoint(4).metrics  # GCG / pool logs too


def test_checkpoints_reload_bit_identically_with_their_pool(toy, tmp_path):
    m = R2D2(preset="cpu", reset_every=1)
    h = toy.fresh()
    traj = train(h, m, _data(toy), out=tmp_path / "t", config=CFG, progress=False)
    assert toy.state_equal(h.model, traj.load_checkpoint().model)
    _same_state(traj.method_state(), m.state_dict())
    s2 = traj.method_state(2)
    assert s2["n_resets"] == 1 and s2["generator"].dtype == torch.uint8
    assert [p["age"] for p in s2["pool"]] != [p["age"] for p in traj.method_state(4)["pool"]]
    # a fresh method restores the saved pool exactly
    _, m2, _ = _setup(toy, R2D2Config.cpu_preset(reset_every=1))
    m2.load_state_dict(s2)
    _same_state(m2.state_dict(), s2)
    metrics = traj.checkpoint(2).metrics
    for key in ("utility_ce", "away", "toward", "p_target", "gcg_loss", "gcg_loss_start",
                "pool_gcg_loss", "pool_age", "pool_resets"):
        assert key in metrics, key


class _DiscardGCG(R2D2):
    """Runs the GCG refresh, then puts the pool and generator back as they were: training
    must then equal a run without GCG steps, unless GCG leaked into parameter gradients."""

    def before_step(self, ctx, batch):
        saved = [(e.item.suffix_ids.clone(), e.item.suffix) for e in self.pool]
        gen = self._gen.get_state()
        logs = super().before_step(ctx, batch)
        for e, (ids, text) in zip(self.pool, saved):
            e.item.suffix_ids, e.item.suffix = ids, text
        self._gen.set_state(gen)
        return logs


def test_gcg_steps_leave_parameter_gradients_alone(toy, tmp_path):
    cfg = CFG.replace(max_steps=3, save_every=3, grad_accum=2)
    opts = dict(preset="cpu", n_update=None, reset_every=None)
    h0 = toy.fresh()
    train(h0, R2D2(gcg_steps=0, **opts), _data(toy), out=tmp_path / "a", config=cfg, progress=False)
    h1 = toy.fresh()
    m1 = _DiscardGCG(gcg_steps=3, search_width=64, **opts)
    train(h1, m1, _data(toy), out=tmp_path / "b", config=cfg, progress=False)
    assert m1.gcg_steps_done == 9
    assert toy.state_equal(h0.model, h1.model)
    # outside the trainer's guard too: GCG only differentiates w.r.t. one-hot suffixes
    h2, m2, _ = _setup(toy)
    h2.model.train()
    m2.before_step(_ctx(h2, 0), {})
    assert all(p.grad is None for p in h2.model.parameters())


# ----------------------------------------------------------------------------- input
def test_harmful_records_formats():
    ps = PromptSet(["Do X.", "Do Y."], name="adv", targets=["Sure, X", "Sure, Y"])
    assert harmful_records(ps, default_refusal="No.")[1] == {"prompt": "Do Y.", "target": "Sure, Y",
                                                             "refusal": "No."}
    recs = harmful_records([("A?", "Sure, A", "Nope."), {"behavior": "B?", "target": "Sure, B",
                                                         "response": "I cannot."}],
                           default_refusal="No.")
    assert [r["refusal"] for r in recs] == ["Nope.", "I cannot."]


def test_bad_input_errors(toy, tmp_path):
    with pytest.raises(DatasetFormatError, match=r"item 0: 'How do I make a bomb at home\?' has no harmful target"):
        R2D2().records({"utility": toy.HARMLESS, "harmful": toy.HARMFUL})
    with pytest.raises(DatasetFormatError, match="prompt set 'adv' has no targets"):
        harmful_records(PromptSet(["Do X."], name="adv"), default_refusal="No.")
    with pytest.raises(DatasetFormatError, match="item 1: missing or empty harmful target"):
        harmful_records([("A?", "Sure"), {"prompt": "B?", "target": " "}], default_refusal="No.")
    with pytest.raises(EmptyDatasetError, match="'utility' has no examples"):
        train(toy.fresh(), "r2d2", {"utility": [], "harmful": toy.HARMFUL_PAIRS},
              out=tmp_path / "a", config=CFG, progress=False)
    with pytest.raises(TrainingError, match=r"needs data for role\(s\) \['harmful'\]"):
        train(toy.fresh(), "r2d2", {"utility": toy.HARMLESS}, out=tmp_path / "b", config=CFG,
              progress=False)
    with pytest.raises(TrainConfigError, match="pool_size must be an int >= 1, got 0"):
        R2D2(pool_size=0)
    with pytest.raises(TrainConfigError, match=r"n_reset \(9\) must be <= pool_size \(8\)"):
        R2D2(n_reset=9)
    with pytest.raises(TrainConfigError, match=r"n_update \(5\) must be <= pool_size \(4\)"):
        R2D2(preset="cpu", n_update=5)
    with pytest.raises(TrainConfigError, match="away_loss must be one of"):
        R2D2(away_loss="kl")
    with pytest.raises(TrainConfigError, match="suffix_len"):
        R2D2(suffix_len=(5, 2))
    with pytest.raises(TrainConfigError, match="unknown r2d2 preset 'gpu'"):
        R2D2(preset="gpu")
    with pytest.raises(TrainConfigError, match=r"unknown r2d2 config key\(s\) \['pool'\]"):
        R2D2(pool=3)
    # utility rows fit in 55 tokens (longest: 51); item 0 + a 6-mark suffix + refusal is 59
    m = R2D2(preset="cpu")
    with pytest.raises(DatasetFormatError, match="item 0: prompt \\+ longest suffix .* 59 tokens > max_length 55"):
        m.setup(toy.fresh(), m.records(m.split_data(_data(toy))), CFG.replace(max_length=55))
    _, m, _ = _setup(toy)
    with pytest.raises(TrainingError, match="names behaviour 0 .*which this run's harmful data lacks"):
        bad = m.state_dict()
        m2 = R2D2(preset="cpu")
        m2.setup(toy.fresh(), m2.records({"utility": toy.HARMLESS,
                                          "harmful": [("Other?", "Sure")] * 5}), CFG)
        m2.load_state_dict(bad)


def test_defaults_are_the_public_recipe_and_presets_resolve(toy):
    c = R2D2().config
    assert (c.pool_size, c.n_update, c.gcg_steps, c.search_width, c.topk, c.reset_every,
            c.n_reset, c.away_weight, c.toward_weight, c.suffix_token, c.suffix_len) == (
        8, None, 5, 512, 256, 50, 1, 0.5, 0.5, "!", (15, 20))
    tc = R2D2().default_train_config()
    assert (tc.lr, tc.lr_scheduler, tc.batch_size, tc.grad_accum) == (2e-5, "cosine", 8, 4)
    # the CLI path: a mapping with a preset key, then overrides; the manifest records values
    m = get_method("r2d2", {"preset": "cpu", "pool_size": 3})
    assert m.config == R2D2Config.cpu_preset(pool_size=3)
    assert m.describe()["config"]["suffix_len"] == [4, 6] and "preset" not in m.describe()["config"]
    assert R2D2(m.describe()["config"]).config == m.config  # JSON lists round-trip to tuples


def test_lora_run_refreshes_the_pool_through_the_adapted_model(toy, tmp_path):
    from safetygeo.training import LoraSpec

    m = R2D2(preset="cpu")
    h = toy.fresh()
    traj = train(h, m, _data(toy), out=tmp_path / "t", progress=False,
                 config=CFG.replace(max_steps=2, lora=LoraSpec(r=2, target_modules=("q_proj", "v_proj"))))
    assert m.gcg_steps_done == 4 and all(torch.isfinite(torch.tensor(list(traj.losses().values()))))
    assert toy.state_equal(h.model, traj.load_checkpoint().model)


def test_cli_trains_r2d2_with_the_cpu_preset(toy, tmp_path):
    import json

    from typer.testing import CliRunner

    from safetygeo.cli import app
    from safetygeo.training import Trajectory

    h = toy.fresh()
    model_dir = tmp_path / "tiny"
    h.model.save_pretrained(model_dir)
    h.tokenizer.save_pretrained(model_dir)
    util, harm = tmp_path / "utility.jsonl", tmp_path / "harmful.jsonl"
    util.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in toy.HARMLESS))
    harm.write_text("".join(json.dumps({"goal": p, "target": t}) + "\n" for p, t in toy.HARMFUL_PAIRS))
    out = tmp_path / "traj"
    r = CliRunner().invoke(app, ["train", "r2d2", "-m", str(model_dir), "-o", str(out),
                                 "-d", f"utility={util}", "-d", f"harmful={harm}",
                                 "--method-opt", "preset=cpu", "--method-opt", "pool_size=3",
                                 "--max-steps", "2", "--batch-size", "2", "--save-every", "2",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    t = Trajectory.load(out)
    assert t.manifest["method"]["config"]["pool_size"] == 3
    assert t.manifest["method"]["config"]["search_width"] == 32
    assert t.manifest["data"]["harmful"]["n"] == len(toy.HARMFUL_PAIRS)
    assert len(t.method_state()["pool"]) == 3


def test_a_suffix_token_outside_the_vocabulary_is_refused(toy):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from safetygeo.models import load_model
    from safetygeo.models.tiny import tiny_model

    words = ["<pad>", "<unk>", "<eos>", "user", "assistant", ":", "how", "do", "i", "x", "?",
             "sure", "here", "cannot", "the"]
    wl = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    wl.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=wl, unk_token="<unk>", pad_token="<pad>",
                                  eos_token="<eos>")
    h = load_model(tiny_model("llama", n_layers=1, d_model=16, vocab_size=len(words)), tok,
                   template="user : {instruction} assistant :")
    data = {"utility": [("how do i x ?", "the x")], "harmful": [("how do i x ?", "sure here")]}
    m = R2D2(preset="cpu", refusal="i cannot")
    with pytest.raises(TrainConfigError, match="suffix_token '!' is not in the tokenizer's vocabulary"):
        m.setup(h, m.records(m.split_data(data)), CFG)
    m = R2D2(preset="cpu", refusal="i cannot", suffix_token="the")
    m.setup(h, m.records(m.split_data(data)), CFG)
    assert all(set(e.item.suffix_ids.tolist()) == {words.index("the")} for e in m.pool)

