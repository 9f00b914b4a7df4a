"""Every command quoted in ``benchmarks/RESULTS.md`` and ``benchmarks/README.md`` parses as
written (issue 26: ``python benchmarks/nulls.py`` without a section used to exit with
"argument sections: invalid choice: ['batched']").

What this checks: each quoted ``python benchmarks/X.py ARGS`` command is run through its
script's own ``main()`` up to ``ArgumentParser.parse_args`` (the parse result is taken and
the run stopped there), and each quoted ``safetygeo ...`` command is parsed by the click
command tree of the CLI (``make_context``: the sub-command exists, its options and argument
types and choices are valid, required arguments are present) without being invoked. A
placeholder alternative written ``a|b`` is checked as each alternative.

What it cannot check: that the work then runs (models, toy stages, timings: minutes to
hours), checks a script makes after parsing its arguments, files that must exist, or
environment variables set in front of a command (they are dropped). A quote of a bare
sub-command (``safetygeo evaluate-defenses`` in prose) is only checked to name a command.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "benchmarks" / "RESULTS.md", ROOT / "benchmarks" / "README.md"]
_CMD = re.compile(r"(^|\s)(python benchmarks/\S+\.py|safetygeo [a-z])")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def quoted_commands(text: str) -> list[str]:
    """Commands in fenced blocks (backslash continuations joined, ``# comments`` dropped)
    and in inline code spans (which may wrap over lines)."""
    out: list[str] = []
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    for block in blocks:
        for line in re.sub(r"\\\n", " ", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if _CMD.search(line):
                out.append(" ".join(line.split()))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if _CMD.search(span):
            out.append(span)
    return out


def argvs(command: str) -> list[list[str]]:
    """The argv(s) of a quoted command: leading ``VAR=value`` dropped, ``a|b`` expanded."""
    words = shlex.split(command)
    while words and _ENV.match(words[0]):
        words.pop(0)
    out: list[list[str]] = [[]]
    for w in words:
        alts = w.split("|") if "|" in w and not w.startswith("-") else [w]
        out = [a + [alt] for a in out for alt in alts]
    return out


def _cases() -> list[tuple[str, list[str]]]:
    cases = []
    for doc in DOCS:
        for cmd in quoted_commands(doc.read_text(encoding="utf-8")):
            for argv in argvs(cmd):
                cases.append((f"{doc.name}: {' '.join(argv)}", argv))
    return cases


CASES = _cases()


def test_the_docs_quote_commands_and_the_extractor_finds_them() -> None:
    assert len(CASES) >= 30
    found = {" ".join(a) for _, a in CASES}
    assert "python benchmarks/nulls.py" in found  # the example
    assert "python benchmarks/classifier.py --external DIR --split heldout" in found
    assert any(c.startswith("safetygeo evaluate-defenses toy:base") and "--out" in c
               for c in found)  # a block command over three lines
    text = "```\npython benchmarks/a.py \\\n  --x 1   # note\n```\nsee `safetygeo demo\n--quick`"
    assert quoted_commands(text) == ["python benchmarks/a.py --x 1", "safetygeo demo --quick"]
    assert argvs("A=1 B=x python b.py --s dev|heldout") == [
        ["python", "b.py", "--s", "dev"], ["python", "b.py", "--s", "heldout"]]


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def _check_script(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    assert argv[0] == "python" and len(argv) >= 2
    path = ROOT / argv[1]
    assert path.is_file(), f"{argv[1]} does not exist"
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        raise _Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr("sys.argv", [str(path), *argv[2:]])
    with pytest.raises(_Parsed) as parsed:
        module.main()
    return parsed.value.namespace


def _check_cli(argv: list[str]) -> None:
    from safetygeo.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("safetygeo", argv[1:], resilient_parsing=False)
    # click ≥ 8.2 keeps the sub-command name apart (``protected_args`` before 8.2)
    protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
    name, cmd, rest = group.resolve_command(ctx, [*protected, *ctx.args])
    assert cmd is not None, f"no sub-command {name!r}"
    if rest:  # a full command line: parse it as the command would
        cmd.make_context(name, rest, parent=ctx)


@pytest.mark.parametrize("where, argv", CASES, ids=[c[0] for c in CASES])
def test_quoted_command_parses(where: str, argv: list[str], monkeypatch) -> None:
    if argv[0] == "python":
        _check_script(argv, monkeypatch)
    else:
        assert argv[0] == "safetygeo", where
        _check_cli(argv)


def test_nulls_without_a_section_runs_the_batched_section() -> None:
    """The issue's case: no section given means the default section, not an argparse error;
    an unknown section is still refused."""
    path = ROOT / "benchmarks" / "nulls.py"
    spec = importlib.util.spec_from_file_location("_bench_nulls_sections", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.parse_args([]).sections == ["batched"]
    assert module.parse_args(["tail", "carriers"]).sections == ["tail", "carriers"]
    with pytest.raises(SystemExit):
        module.parse_args(["nonsense"])
