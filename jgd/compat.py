"""The JAX features the library uses that older releases lack: its version differences all live here.

jgd supports ``jax>=0.4.35`` (the minimum in ``pyproject.toml``); everything else in the library is written
against current JAX and calls these helpers where older releases differ. Memory spaces
(``jax.memory.Space``, JAX 0.7.1): :func:`jgd.offload` needs them and says so on older JAX; abstract
values have no ``memory_space`` before them, and every array is then in device memory.
(The runner, which uses only the public library, has its one difference, mesh axis types, in
:mod:`jgd.experiment.train.sharding`.)
"""

from __future__ import annotations

from typing import Any, Literal

import jax

HAS_MEMORY_SPACES = hasattr(jax, "memory")
"""Whether this JAX places arrays in named memory spaces (``jax.memory.Space``), as :func:`jgd.offload` needs."""


def memory_space(where: Literal["host", "device"]) -> Any:
    """``jax.memory.Space.Host`` or ``.Device``, for ``jax.device_put`` inside or outside ``jit``.

    Raises:
      RuntimeError: on a JAX without memory spaces (before 0.7.1), naming the version needed.
    """
    if not HAS_MEMORY_SPACES:
        raise RuntimeError(
            f"jgd.offload needs jax>=0.7.1 (jax.memory, to place state in host memory); this is jax {jax.__version__}"
        )
    return jax.memory.Space.Host if where == "host" else jax.memory.Space.Device


def on_host(aval: Any) -> bool:
    """Whether an abstract value (from ``jax.make_jaxpr``) lives in host memory; never, before memory spaces."""
    return HAS_MEMORY_SPACES and getattr(aval, "memory_space", None) == jax.memory.Space.Host
