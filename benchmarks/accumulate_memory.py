"""Gradient accumulation's memory: jgd.accumulate(adam, every=4) against optax.MultiSteps(adam, 4), side by side.

On a ResNet-18-like tree (11.7M float32 params), it prints the optimizer state's
bytes (from ``jax.eval_shape``, nothing allocated) and what XLA plans for one
jitted micro-step (update + apply_updates, params and state donated): scratch
bytes, and the peak, ``arguments + outputs - donated + scratch``. Nothing runs.

    python benchmarks/accumulate_memory.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import jgd

try:
    from benchmarks.update_step import resnet18_shapes
except ImportError:  # run as a script from the benchmarks folder
    from step_cases import resnet18_shapes

VARIANTS = {
    "adam alone": (lambda: jgd.adam(1e-3), lambda: optax.adam(1e-3)),
    "accumulate / MultiSteps, every=4": (
        lambda: jgd.accumulate(jgd.adam(1e-3), every=4),
        lambda: optax.MultiSteps(optax.adam(1e-3), every_k_schedule=4),
    ),
}


def nbytes(tree) -> int:
    return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def plan(tx, params) -> dict[str, float]:
    """State MB, and scratch and peak MB of one jitted, donated step, from the compiled plan."""
    state = jax.eval_shape(tx.init, params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jgd.apply_updates(params, updates), state

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
    memory = compiled.memory_analysis()
    peak = memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
    return {
        "state_mb": nbytes(state) / 2**20,
        "scratch_mb": memory.temp_size_in_bytes / 2**20,
        "peak_mb": (peak + memory.temp_size_in_bytes) / 2**20,
    }


def main() -> None:
    params = {f"p{i:03d}": jax.ShapeDtypeStruct(s, jnp.float32) for i, s in enumerate(resnet18_shapes())}
    print(f"ResNet-18-like tree: {nbytes(params) / 2**20:.1f} MB of float32 params, {jax.default_backend()}\n")
    print(
        "| variant | jgd state MB | optax state MB | ratio | jgd step scratch MB | optax step scratch MB "
        "| jgd step peak MB | optax step peak MB | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (make_jgd, make_optax) in VARIANTS.items():
        ours, theirs = plan(make_jgd(), params), plan(make_optax(), params)
        print(
            f"| {name} | {ours['state_mb']:.1f} | {theirs['state_mb']:.1f} | "
            f"{ours['state_mb'] / theirs['state_mb']:.2f} | {ours['scratch_mb']:.1f} | {theirs['scratch_mb']:.1f} | "
            f"{ours['peak_mb']:.1f} | {theirs['peak_mb']:.1f} | {ours['peak_mb'] / theirs['peak_mb']:.2f} |"
        )


if __name__ == "__main__":
    main()
