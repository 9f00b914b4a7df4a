"""Atomic file writing: write to a temporary file in the same folder, fsync, then rename.

A crash mid-write never leaves a half-written artifact under the final name.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_text(d / "a.json", '{"x": 1}')
    >>> (d / "a.json").read_text()
    '{"x": 1}'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as pretty JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_text(path: str | os.PathLike[str], *, what: str = "file",
              error: type[Exception] | None = None) -> str:
    """Read a UTF-8 text file (a leading BOM is dropped); a file that is not UTF-8 raises
    ``error`` (default :class:`~safetygeo.errors.SafetyGeoError`) naming the file and the
    first bad byte.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> _ = p.write_bytes(b"ok \\xff")
        >>> read_text(p, what="prompt file")
        Traceback (most recent call last):
        ...
        safetygeo.errors.SafetyGeoError: prompt file ... is not UTF-8 text (byte 0xff at offset 3)
    """
    from safetygeo.errors import SafetyGeoError

    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        cls = error or SafetyGeoError
        raise cls(f"{what} {str(path)!r} is not UTF-8 text (byte {raw[exc.start]:#04x} at "
                  f"offset {exc.start})") from None


def read_json(path: str | os.PathLike[str], *, what: str = "JSON file",
              error: type[Exception] | None = None) -> Any:
    """Read a UTF-8 JSON file; invalid UTF-8 or JSON raises ``error`` naming the file."""
    from safetygeo.errors import SafetyGeoError

    text = read_text(path, what=what, error=error)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise (error or SafetyGeoError)(f"{what} {str(path)!r} is not valid JSON ({exc})") from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, read in 4 MiB chunks (the one file hash of the package:
    checkpoint markers, report caches, ``load_model(verify=...)``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
        >>> _ = p.write_bytes(b"abc")
        >>> file_sha256(p)[:16]
        'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()
