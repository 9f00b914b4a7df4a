"""Per-token weights of a batch: GA's 1/p made visible."""

from __future__ import annotations

import numpy as np
import pytest

from safetygeo.gradients import LossSpec, per_token_weights
from tests.gradients.conftest import HARMFUL_PAIRS, fresh, one_batch


def test_per_token_rows_and_inverse_confidence() -> None:
    h = fresh()
    forget = LossSpec.from_data(HARMFUL_PAIRS, "harmful_ce", batch_size=2)
    tw = per_token_weights(h, ["ga", "wga", "npo"], forget)
    df = tw.to_frame()
    n_tok = int((one_batch(h, forget)["labels"][:, 1:] != -100).sum())
    assert len(df) == 3 * n_tok
    ga = df[df.objective == "ga"]
    assert np.allclose(ga.w_p, 1 / ga.p, rtol=1e-6)
    assert np.allclose(ga.groupby("example").w_p_share.sum(), 1.0)
    npo = df[df.objective == "npo"]  # reference = the model itself: 2σ(0) = 1
    assert np.allclose(npo.w_logp, 1.0)
    assert sorted(ga.example.unique()) == [0, 1, 2]
    # the decoded tokens spell the completions (+ end of turn)
    first = "".join(ga[ga.example == 0].sort_values("position").token)
    assert first.startswith(HARMFUL_PAIRS[0][1])
    s = tw.summary().set_index("objective")
    assert s.loc["ga", "max_w_p"] == pytest.approx(float(ga.w_p.max()))
    assert s.loc["wga", "mean_w_p"] < s.loc["ga", "mean_w_p"]
