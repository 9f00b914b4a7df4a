"""The ``safetygeo`` command line: one typer app, one grammar.

``safetygeo VERB MODEL --set ROLE=SPEC [options]`` — see :mod:`safetygeo.cli.common` for
the shared options and rules. Commands (one module each): ``inspect``, ``make-tiny``,
``version`` (:mod:`.models`), ``extract``, ``select-carrier``, ``sweep``,
``measure-frontier``, ``abliterate``, ``search-abliteration`` (:mod:`.abliterate`), ``evaluate``, ``attack-gcg``, ``train``, ``evaluate-defenses`` (:mod:`.defenses`), ``demo``,
``compare-gradients``, ``measure-g-effect`` (:mod:`.gradients`), ``report`` (batch reports
across training trajectories).

Example (shell)::

    safetygeo make-tiny artifacts/tiny-llama
    safetygeo extract artifacts/tiny-llama --set harmful=example:harmful \\
        --set harmless=example:harmless --out artifacts/extract
"""

from safetygeo.cli import (  # noqa: F401  (importing registers the commands, in help order)
    abliterate,
    attack,
    carriers,
    defenses,
    demo,
    evaluate,
    extract,
    frontier,
    gradients,
    models,
    report,
    sweep,
    train,
)
from safetygeo.cli.app import app
from safetygeo.cli.common import parse_layers

__all__ = ["app", "main", "parse_layers"]


def main() -> None:  # pragma: no cover - console entry point alias
    app()
