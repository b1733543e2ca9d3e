"""ZeRO-1 and host offload on 8 host devices: placement, bytes per device, and results against plain runs.

Started by tests/wrappers/test_state_at_scale.py in a fresh process, since the device count is
fixed when JAX starts; with the argument ``preconditioners``, the ZeRO-1 checks of SOAP's and Kron's
factors instead. Prints one line per check, ``<name>: <detail> -> True/False``, and exits with the number
of failed checks.
"""

import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jgd
from jgd.state import transform_states

STEPS = 20
rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(64, 16)), jnp.float32)
Y = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
PARAMS = {
    "w1": jnp.asarray(rng.normal(size=(16, 32)) * 0.3, jnp.float32),
    "b1": jnp.zeros(32, jnp.float32),
    "w2": jnp.asarray(rng.normal(size=(32, 8)) * 0.3, jnp.float32),
    "b2": jnp.zeros(8, jnp.float32),
}


def make_tx():
    return jgd.chain(jgd.clip_by_global_norm(1.0), jgd.adam(0.01), jgd.weight_decay(1e-3))


def loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


def train(tx, params, param_sharding=None, state_sharding=None, on_step=lambda state: None):
    """``STEPS`` jitted steps from a state made by ``jax.jit(tx.init, out_shardings=state_sharding)``."""
    out = None if state_sharding is None else (param_sharding, state_sharding)

    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params, X, Y), state, params)
        return jgd.apply_updates(params, updates), state

    state = jax.jit(tx.init, out_shardings=state_sharding)(params)
    step = jax.jit(step, out_shardings=out, donate_argnums=1)
    for _ in range(STEPS):
        on_step(state)
        params, state = step(params, state)
    on_step(state)
    return params, state


def slot_leaves(state):
    return [leaf for s in transform_states(state) for leaf in jax.tree.leaves(s.slots)]


def bytes_per_device(leaves):
    held = {}
    for leaf in leaves:
        for shard in leaf.addressable_shards:
            held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return held


def same_bits(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def close(name, got, want, tol=1e-6):
    """Reports whether ``got`` equals ``want`` to rounding (float32 reductions in another order)."""
    pairs = zip(jax.tree.leaves(got), jax.tree.leaves(want))
    error = max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in pairs)
    return report(name, f"max error {error:.1e}", error <= tol)


def report(name, detail, ok):
    print(f"{name}: {detail} -> {bool(ok)}", flush=True)
    return not ok


def zero1_checks(mesh, plain_params, plain_state):
    """Data parallel (params replicated) with the slots split over the 8 devices."""
    replicated = NamedSharding(mesh, P())
    params = jax.device_put(PARAMS, replicated)
    tx = make_tx()
    shardings = jgd.state_sharding(tx, params, replicated, shard_over="data")
    got_params, got_state = train(tx, params, replicated, shardings)
    failures = close("zero1 params", got_params, plain_params) + close("zero1 state", got_state, plain_state)
    leaves = slot_leaves(got_state)
    held, total = bytes_per_device(leaves), sum(leaf.nbytes for leaf in leaves)
    detail = f"{sorted(set(held.values()))} bytes on each of {len(held)} devices, of {total}"
    failures += report("zero1 bytes", detail, len(held) == 8 and set(held.values()) == {total // 8})
    return failures, got_params, got_state, shardings


def fsdp_checks(plain_params):
    """Params sharded over "model" (4 x 2 mesh): the slots split over "data" too, on another dimension."""
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    specs = {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None), "b2": P()}
    param_sharding = {k: NamedSharding(mesh, spec) for k, spec in specs.items()}
    params = jax.device_put(PARAMS, param_sharding)
    tx = make_tx()
    shardings = jgd.state_sharding(tx, params, param_sharding, shard_over="data")
    got, state = train(tx, params, param_sharding, shardings)
    mu = state[1].slots["mu"]
    specs_seen = {k: tuple(mu[k].sharding.spec) for k in specs}
    want = {"w1": ("data", "model"), "b1": ("model",), "w2": ("model", "data"), "b2": ("data",)}
    failures = report("fsdp+zero1 slot specs", specs_seen, specs_seen == want)
    return failures + close("fsdp+zero1 params", got, plain_params)


def offload_checks(mesh, zero1_params, zero1_state):
    """ZeRO-1 with mu and nu in pinned host memory between steps, against the same run on the device."""
    replicated = NamedSharding(mesh, P())
    params = jax.device_put(PARAMS, replicated)
    tx = jgd.offload(make_tx(), slots=("mu", "nu"))
    shardings = jgd.state_sharding(tx, params, replicated, shard_over="data")
    kinds = set()

    def record(state):
        kinds.update(leaf.sharding.memory_kind for leaf in slot_leaves(state))

    got_params, got_state = train(tx, params, replicated, shardings, on_step=record)
    failures = report("offload memory kinds between steps", sorted(kinds), kinds == {"pinned_host"})
    failures += report("offload params bit for bit", "", same_bits(got_params, zero1_params))
    return failures + report("offload state bit for bit", "", same_bits(got_state, zero1_state))


def preconditioner_checks(mesh):
    """ZeRO-1 of a preconditioner's factors: each split over the 8 devices, and the run equal to one device's."""
    # SOAP's factors of the 16-long and 8-long axes only: the 32-long axes' factors have rank 16 at most (16 inputs),
    # and the basis of a null space is any basis, so the rounding of a split product turns into steps of 5e-2.
    makers = {"soap": lambda: jgd.soap(0.01, eps=1e-3, max_precond_dim=16), "kron": lambda: jgd.kron(0.01)}
    replicated = NamedSharding(mesh, P())
    failures = 0
    for name, make in makers.items():
        plain_params, _ = train(make(), PARAMS)
        params = jax.device_put(PARAMS, replicated)
        tx = make()
        got_params, got_state = train(
            tx, params, replicated, jgd.state_sharding(tx, params, replicated, shard_over="data")
        )
        # Sharded matrix products sum in another order: float32 rounding, grown through the preconditioner.
        failures += close(f"{name} zero1 params", got_params, plain_params, tol=1e-5)
        factors = jax.tree.leaves(got_state.factors)
        held, total = bytes_per_device(factors), sum(leaf.nbytes for leaf in factors)
        detail = f"{sorted(set(held.values()))} bytes on each of {len(held)} devices, of {total}"
        failures += report(f"{name} zero1 factor bytes", detail, len(held) == 8 and set(held.values()) == {total // 8})
    return failures


def main():
    mesh = Mesh(np.array(jax.devices()), ("data",))
    if sys.argv[1:] == ["preconditioners"]:
        raise SystemExit(preconditioner_checks(mesh))
    plain_params, plain_state = train(make_tx(), PARAMS)
    failures, zero1_params, zero1_state, _ = zero1_checks(mesh, plain_params, plain_state)
    failures += fsdp_checks(plain_params)
    failures += offload_checks(mesh, zero1_params, zero1_state)
    raise SystemExit(failures)


if __name__ == "__main__":
    main()
