"""Reports: self-contained HTML (:class:`HtmlReport`) and the plotly figures in it."""

from safetygeo.reports.figures import (
    behavior_figure,
    carrier_scores_figure,
    coupling_figure,
    null_figure,
    sweep_figure,
)
from safetygeo.reports.gradients import (
    g_effect_figure,
    g_effect_steps_figure,
    gradient_cosine_figure,
    token_weights_figure,
)
from safetygeo.reports.html import HtmlReport

__all__ = ["HtmlReport", "behavior_figure", "carrier_scores_figure", "coupling_figure",
           "g_effect_figure", "g_effect_steps_figure", "gradient_cosine_figure", "null_figure",
           "sweep_figure", "token_weights_figure"]
