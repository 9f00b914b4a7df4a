"""The ``safetygeo`` typer application and its global options."""

from typing import Annotated

import typer

from safetygeo.cli.common import quiet_libraries

app = typer.Typer(
    name="safetygeo",
    help="Measure the geometry of safety (refusal / harmfulness carriers) inside LLM "
         "checkpoints. Grammar: safetygeo VERB MODEL --set ROLE=SPEC [options].",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: wraps at 80 columns, never cuts option names
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show library logs and progress bars.")] = False,
) -> None:
    """Global options."""
    quiet_libraries(verbose)
    from safetygeo.cli import common

    common.VERBOSE = verbose
