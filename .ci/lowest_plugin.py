"""A pytest plugin for .ci/lowest: the tests call ``jax.enable_x64``, public from JAX 0.8.0; older JAX has
the same context manager as ``jax.experimental.enable_x64``. Nothing in jgd itself uses either."""

import jax

if not hasattr(jax, "enable_x64"):
    from jax.experimental import enable_x64

    jax.enable_x64 = enable_x64
