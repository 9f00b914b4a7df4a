"""Reports: batch geometry reports across training trajectories (:func:`run_report`, the
:class:`Protocol` and its registry of steps), self-contained HTML (:class:`HtmlReport`)
and the plotly figures in them.

Example:
    >>> Protocol().step_names
    ['carriers', 'rank', 'drift', 'coupling', 'ablation', 'behavior']
"""

from safetygeo.reports.figures import (
    behavior_figure,
    carrier_scores_figure,
    coupling_figure,
    null_figure,
    sweep_figure,
)
from safetygeo.reports.frontier import frontier_figure, refusal_dimension_figure
from safetygeo.reports.gradients import (
    g_effect_figure,
    g_effect_steps_figure,
    gradient_cosine_figure,
    token_weights_figure,
)
from safetygeo.reports.html import HtmlReport
from safetygeo.reports.protocol import (
    CheckpointSelection,
    LoadSettings,
    Protocol,
    ProtocolError,
    SetsConfig,
)
from safetygeo.reports.registry import ProtocolStep, StepOutput, register_step, step_names
from safetygeo.reports.sources import register_judge, register_set_source
from safetygeo.reports.trajectory_report import (
    TABLE_COLUMNS,
    ReportResult,
    read_report,
    run_report,
)

__all__ = ["TABLE_COLUMNS", "CheckpointSelection", "HtmlReport", "LoadSettings", "Protocol",
           "ProtocolError", "ProtocolStep", "ReportResult", "SetsConfig", "StepOutput",
           "behavior_figure", "carrier_scores_figure", "coupling_figure", "frontier_figure",
           "g_effect_figure", "g_effect_steps_figure", "gradient_cosine_figure", "null_figure",
           "read_report", "refusal_dimension_figure", "register_judge", "register_set_source",
           "register_step", "run_report", "step_names", "sweep_figure", "token_weights_figure"]
