"""Reports: self-contained HTML (:class:`HtmlReport`) and the plotly figures in it."""

from safetygeo.reports.figures import (
    behavior_figure,
    carrier_scores_figure,
    coupling_figure,
    null_figure,
    sweep_figure,
)
from safetygeo.reports.frontier import frontier_figure, refusal_dimension_figure
from safetygeo.reports.html import HtmlReport

__all__ = ["HtmlReport", "behavior_figure", "carrier_scores_figure", "coupling_figure",
           "frontier_figure", "null_figure", "refusal_dimension_figure", "sweep_figure"]
