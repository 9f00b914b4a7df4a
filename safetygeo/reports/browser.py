"""Open an HTML report in headless Chromium: did every figure render, without console errors?

:func:`browser_check` loads a copy of the page with a small probe script first in
``<head>`` that records uncaught errors and ``console.error`` calls, waits for the load
event, then counts the plotly figures and those that rendered (an ``svg.main-svg`` and a
laid-out plot); Chromium's ``--dump-dom`` returns the probe's verdict. With
``screenshot=``, a second run saves a PNG of the whole page (height measured by the probe).

Chromium runs with ``--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
--disable-background-networking --disable-component-update --disable-sync`` and a
throw-away ``--user-data-dir``: it opens nothing but the local file.

Example:
    >>> find_chromium() is None or isinstance(find_chromium(), str)
    True
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from safetygeo.errors import SafetyGeoError

__all__ = ["BrowserCheck", "browser_check", "find_chromium"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--hide-scrollbars")

_PROBE = """<script>
window.__sgErrors = [];
window.addEventListener('error', function (e) { window.__sgErrors.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function (e) { window.__sgErrors.push('unhandled rejection: ' + String(e.reason)); });
(function () { var ce = console.error; console.error = function () {
  window.__sgErrors.push(Array.prototype.map.call(arguments, String).join(' ')); ce.apply(console, arguments); }; })();
window.addEventListener('load', function () { setTimeout(function () {
  var divs = document.querySelectorAll('.plotly-graph-div'); var ok = 0;
  divs.forEach(function (d) { if (d.querySelector('svg.main-svg') && d._fullLayout) { ok++; } });
  var out = document.createElement('pre'); out.id = 'sg-probe';
  out.textContent = JSON.stringify({figures: divs.length, rendered: ok, errors: window.__sgErrors,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(out); }, 300); });
</script>"""


@dataclass(frozen=True)
class BrowserCheck:
    """Verdict of :func:`browser_check`.

    Attributes:
        figures: plotly figures in the page; rendered: how many rendered.
        errors: uncaught errors, rejected promises and ``console.error`` messages.
        height: the page height in CSS pixels; screenshot: the PNG written, if any.
        browser: the Chromium executable used.
    """

    figures: int
    rendered: int
    errors: list[str] = field(default_factory=list)
    height: int = 0
    screenshot: Path | None = None
    browser: str = ""

    @property
    def ok(self) -> bool:
        return self.figures == self.rendered and not self.errors


def find_chromium() -> str | None:
    """The Chromium / Chrome executable on ``PATH`` (or ``$CHROMIUM``), else ``None``."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="sg-chromium-") as profile:
        cmd = [browser, *_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise SafetyGeoError(f"Chromium did not finish within {timeout:.0f} s") from exc


def browser_check(html: str | os.PathLike[str], *, screenshot: str | os.PathLike[str] | None = None,
                  width: int = 1280, timeout: float = 180.0,
                  browser: str | None = None) -> BrowserCheck:
    """Load ``html`` in headless Chromium and report figures rendered and errors.

    Raises:
        SafetyGeoError: no Chromium found, or it failed / produced no verdict.
    """
    browser = browser or find_chromium()
    if browser is None:
        raise SafetyGeoError("no Chromium found (apt-get install chromium, or set $CHROMIUM)")
    page = Path(html).resolve()
    text = page.read_text(encoding="utf-8")
    probed = text.replace("<head>", "<head>" + _PROBE, 1)
    with tempfile.TemporaryDirectory(prefix="sg-page-") as tmp:
        copy = Path(tmp) / page.name
        copy.write_text(probed, encoding="utf-8")
        proc = _run(browser, ["--virtual-time-budget=30000", "--dump-dom", copy.as_uri()], timeout)
    m = re.search(r'<pre id="sg-probe">(.*?)</pre>', proc.stdout, flags=re.S)
    if m is None:
        raise SafetyGeoError(f"Chromium returned no verdict (exit {proc.returncode}): "
                             f"{proc.stderr.strip()[-800:]}")
    import html as _html

    verdict = json.loads(_html.unescape(m.group(1)))
    shot = None
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        height = min(max(int(verdict.get("height") or 2000), 600), 16000)
        _run(browser, [f"--screenshot={shot}", f"--window-size={width},{height}",
                       "--virtual-time-budget=30000", page.as_uri()], timeout)
        if not shot.is_file():
            raise SafetyGeoError(f"Chromium wrote no screenshot to {str(shot)!r}")
    return BrowserCheck(int(verdict["figures"]), int(verdict["rendered"]),
                        [str(e) for e in verdict.get("errors", [])], int(verdict.get("height", 0)),
                        shot, browser)
