"""``python -m safetygeo.cli``."""

from safetygeo.cli import app

app()
