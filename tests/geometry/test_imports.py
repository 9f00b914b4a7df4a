"""Pure-math layers stay light: importing geometry's math does not load torch or models."""

from __future__ import annotations

import subprocess
import sys


def test_geometry_angles_imports_no_model_code() -> None:
    code = ("import sys; import safetygeo.geometry.angles, safetygeo.geometry.rank; "
            "mods = [m for m in sys.modules if m.startswith('safetygeo')]; "
            "print('torch' in sys.modules, 'transformers' in sys.modules, len(mods))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_loaded, hf_loaded, n = out.stdout.split()
    assert torch_loaded == "False" and hf_loaded == "False"
    assert int(n) <= 6
