"""Shared fixtures. The suite runs in float32 unless a test asks for ``x64``."""

import jax
import pytest


@pytest.fixture
def x64():
    """Turns on 64-bit floats for one test only."""
    with jax.enable_x64(True):
        yield
