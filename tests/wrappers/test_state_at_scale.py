"""State at scale: abstract initialisation of every transform, state_sharding and host offload."""

import inspect
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

import jgd

# The arguments of the factories that have required ones; the others are built with their defaults.
MINIMAL_ARGS = {
    "accumulate": lambda: (jgd.adam(), 2),
    "masked": lambda: (jgd.weight_decay(1e-3), jgd.masks.decayed),
    "monitor": lambda: (jgd.adam(),),
    "named": lambda: ("encoder", jgd.adam()),
    "partition": lambda: ({"weights": ("w", jgd.adam()), "rest": (".*", jgd.freeze())},),
    "skip_spikes": lambda: (jgd.adam(),),
    "apply_if_finite": lambda: (jgd.chain(jgd.clip_by_global_norm(1.0), jgd.adam()),),
    "clip_by_global_norm": lambda: (1.0,),
    "clip_by_norm": lambda: (1.0,),
    "clip_by_value": lambda: (1.0,),
    "l1_penalty": lambda: (1e-3,),
    "l2_penalty": lambda: (1e-3,),
    "max_norm": lambda: (2.0,),
    "offload": lambda: (jgd.adam(),),
    "scale": lambda: (0.5,),
    "scale_by_learning_rate": lambda: (0.1,),
    "chain": lambda: (jgd.clip_by_global_norm(1.0), jgd.adam()),
    "weight_decay": lambda: (1e-3,),
    "with_extra_args": lambda: (jgd.sgd(),),
    "cautious": lambda: (jgd.adam(),),
    "mars": lambda: (jgd.adamw(),),
    "graft": lambda: (jgd.adam(), jgd.sgd()),
    "galore": lambda: (0.01, 2),
    "mechanize": lambda: (jgd.adam(1.0),),
    "sam": lambda: (jgd.adam(), jgd.sgd(0.05)),
}
RETURNS_TRANSFORM = ("GradientTransformation", jgd.GradientTransformation)
FACTORIES = sorted(
    name
    for name in jgd.__all__
    if inspect.isfunction(getattr(jgd, name))
    and inspect.signature(getattr(jgd, name)).return_annotation in RETURNS_TRANSFORM
)
EXTRA = {
    "scale_by_rms_with_numerator": lambda: jgd.scale_by_rms(numerator=jgd.chain(jgd.ema(), jgd.bias_correction())),
    "chain_with_optax": lambda: jgd.chain(optax.clip(1.0), jgd.nadam(), jgd.weight_decay(1e-3)),
    "lbfgs_memory_3": lambda: jgd.lbfgs(3),
}
PARAMS = {"w": jnp.ones((3, 4), jnp.float32), "b": jnp.zeros(4, jnp.bfloat16)}


def build(name):
    if name in EXTRA:
        return EXTRA[name]()
    return getattr(jgd, name)(*MINIMAL_ARGS.get(name, lambda: ())())


def abstract(tree):
    return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


def test_every_factory_is_covered():
    assert {"adam", "bfgs", "lbfgs", "chain", "apply_if_finite", "scale_by_rms", "offload"} <= set(FACTORIES)


@pytest.mark.parametrize("name", FACTORIES + list(EXTRA))
def test_eval_shape_of_init_matches_init(name):
    tx = build(name)
    shapes = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), PARAMS)
    want = tx.init(PARAMS)
    assert abstract(jax.eval_shape(tx.init, shapes)) == abstract(want)
    device = SingleDeviceSharding(jax.devices()[0])
    placed = jax.jit(tx.init, out_shardings=jgd.state_sharding(tx, shapes, device))(PARAMS)
    assert abstract(placed) == abstract(want)


def one_device_mesh():
    return Mesh(np.array(jax.devices()[:1]), ("data",))


def test_slots_are_placed_like_their_params_and_the_rest_replicated():
    mesh = one_device_mesh()
    specs = {"w": P("data", None), "b": P()}
    tx = jgd.chain(jgd.clip_by_global_norm(1.0), jgd.adam())
    shardings = jgd.state_sharding(tx, PARAMS, specs, mesh=mesh)
    adam = shardings[1]
    assert adam.slots["mu"]["w"].spec == P("data", None) and adam.slots["nu"]["b"].spec == P()
    assert adam.count.spec == P() and adam.hyperparams["learning_rate"].spec == P()
    zero1 = jgd.state_sharding(tx, PARAMS, specs, mesh=mesh, shard_over="data")[1]
    assert zero1.slots["mu"]["w"].spec == P("data", None) and zero1.slots["mu"]["b"].spec == P("data")
    assert zero1.count.spec == P()


def test_quasi_newton_grad_follows_params_and_its_matrix_is_replicated():
    mesh = one_device_mesh()
    shardings = jgd.state_sharding(jgd.bfgs(), PARAMS, NamedSharding(mesh, P("data")), shard_over="data")
    assert shardings.grad["b"].spec == P("data") and shardings.memory.inverse_hessian.spec == P()


def test_state_sharding_errors_name_what_is_wrong():
    tx, mesh = jgd.adam(), one_device_mesh()
    with pytest.raises(ValueError, match=r"param_sharding at \['b'\] is a PartitionSpec: pass mesh="):
        jgd.state_sharding(tx, PARAMS, {"w": NamedSharding(mesh, P()), "b": P()})
    with pytest.raises(ValueError, match=r"shard_over='batch' is not an axis of the mesh, whose axes are \('data',\)"):
        jgd.state_sharding(tx, PARAMS, P(), mesh=mesh, shard_over="batch")
    with pytest.raises(ValueError, match="shard_over='data' needs a mesh"):
        jgd.state_sharding(tx, PARAMS, SingleDeviceSharding(jax.devices()[0]), shard_over="data")
    with pytest.raises(ValueError, match="param_sharding must be one sharding or a tree shaped like params"):
        jgd.state_sharding(tx, PARAMS, {"w": P()}, mesh=mesh)


def test_offload_keeps_the_chosen_slots_on_the_host_and_the_results_bit_for_bit():
    tx, plain = jgd.offload(jgd.adam(0.1), slots=("mu",)), jgd.adam(0.1)
    state, want = tx.init(PARAMS), plain.init(PARAMS)
    step = jax.jit(lambda t, g, s: t.update(g, s, PARAMS), static_argnums=0)
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: (p + i).astype(p.dtype), PARAMS)
        (updates, state), (want_updates, want) = step(tx, grads, state), step(plain, grads, want)
        assert state.slots["mu"]["w"].sharding.memory_kind == "pinned_host"
        assert state.slots["nu"]["w"].sharding.memory_kind == "device"
    for got, ref in zip(jax.tree.leaves((updates, state)), jax.tree.leaves((want_updates, want))):
        np.testing.assert_array_equal(got, ref)


def test_offload_works_without_jit():
    tx = jgd.offload(jgd.trace(0.5))
    state = tx.update({"w": jnp.ones(3)}, tx.init({"w": jnp.zeros(3)}))[1]
    assert state.slots["velocity"]["w"].sharding.memory_kind == "pinned_host"
    np.testing.assert_array_equal(state.slots["velocity"]["w"], np.ones(3))


def test_offload_names_an_unknown_slot():
    with pytest.raises(ValueError, match=r"no slot named \['m'\] in the state; its slots are \['mu', 'nu'\]"):
        jgd.offload(jgd.adam(), slots=("m",)).init(PARAMS)
    with pytest.raises(ValueError, match="slots must be a sequence of slot names"):
        jgd.offload(jgd.adam(), slots="mu")


def test_zero1_and_offload_on_8_host_devices():
    script = Path(__file__).resolve().parents[1] / "state_at_scale_steps.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 8 and all(line.endswith("-> True") for line in lines), result.stdout


@pytest.mark.slow
def test_zero1_splits_preconditioner_factors_on_8_host_devices():
    script = Path(__file__).resolve().parents[1] / "state_at_scale_steps.py"
    result = subprocess.run(
        [sys.executable, str(script), "preconditioners"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and all(line.endswith("-> True") for line in lines), result.stdout
