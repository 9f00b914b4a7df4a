"""``version``, ``make-tiny`` and ``inspect``: what safetygeo and a model look like."""

import json
from pathlib import Path
from typing import Annotated

import typer

from safetygeo.cli.app import app
from safetygeo.cli.common import (
    ModelArg,
    ModelOptions,
    check_out,
    console,
    guarded,
    load_handle,
    model_command,
)


@app.command()
def version() -> None:
    """Print the safetygeo version."""
    from safetygeo import __version__

    typer.echo(__version__)


@app.command("make-tiny")
def make_tiny(
    out: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.",
                                        show_default=False)],
    arch: Annotated[str, typer.Option(help="llama, mistral, qwen2, gemma or gpt2.")] = "llama",
    n_layers: Annotated[int, typer.Option(min=1, help="Number of blocks.")] = 4,
    d_model: Annotated[int, typer.Option(min=8, help="Model width.")] = 64,
    seed: Annotated[int, typer.Option(help="Init seed.")] = 0,
) -> None:
    """Write a tiny random-init checkpoint with an offline tokenizer (no network)."""
    from safetygeo.models.tiny import tiny_model_and_tokenizer

    check_out(out)
    with guarded():
        model, tok = tiny_model_and_tokenizer(arch, n_layers=n_layers, d_model=d_model, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    console.print(f"wrote tiny {arch} ({n_layers} layers, d={d_model}) to {out}")


@app.command("inspect")
@model_command
def inspect_cmd(model: ModelArg, model_opts: ModelOptions) -> None:
    """Show where the residual stream is and how prompts are formatted (JSON)."""
    with guarded():
        h = load_handle(model, model_opts)
        desc = h.describe()
        tmpl = h.chat_template()
        desc["template"] = {"prefix": tmpl.prefix, "suffix": tmpl.suffix, "source": tmpl.source,
                            "n_eoi": len(tmpl.suffix_ids(h.tokenizer))}
    typer.echo(json.dumps(desc, indent=2))
