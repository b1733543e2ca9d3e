"""Shared fixtures and session settings. The suite runs in float32 unless a test asks for ``x64``.

Compiled programs are kept on disk for one session and shared by the xdist workers and by the
processes the tests start: many tests build a fresh transform, or start a fresh process, and compile
a program compiled before (hyperparameters are data, so the program is the same), and compiling is
most of what a small test costs. The folder is made when the session starts and removed when it ends,
so every session compiles each program once; a ``JAX_COMPILATION_CACHE_DIR`` of your own is used
as it is and kept.
"""

import os
import shutil
import tempfile

import jax
import pytest


def pytest_configure(config):
    # The controller runs first; the workers and the tests' processes inherit its environment.
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = config._jgd_compilation_cache = tempfile.mkdtemp(prefix="jgd-xla-")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # every program, however quick
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
    )
    jax.config.update(
        "jax_persistent_cache_min_entry_size_bytes", int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"])
    )


def pytest_unconfigure(config):
    folder = getattr(config, "_jgd_compilation_cache", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def x64():
    """Turns on 64-bit floats for one test only."""
    with jax.enable_x64(True):
        yield
