"""The training helpers fixture (`toy`) is shared with the training tests."""

from tests.training.conftest import toy  # noqa: F401  (re-exported fixture)
