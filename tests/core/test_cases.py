"""tests/cases.py: every public transform factory has a row, and every row's flags say what the transform does."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from tests.cases import BLOCK, CASES, METHOD, NOT_TRANSFORMS, as_params, transform_states

PARAMS = {"w1": jnp.ones((4, 3)), "b1": jnp.zeros(3), "w2": jnp.ones((3, 2)), "b2": jnp.zeros(2)}
GRADS = jax.tree.map(lambda p: jnp.full_like(p, 0.3), PARAMS)


def transform_factories() -> set[str]:
    """The public names annotated to return a GradientTransformation, or that return one when called bare."""
    found = set()
    for name in jgd.__all__:
        obj = getattr(jgd, name)
        if not inspect.isfunction(obj):
            continue
        signature = inspect.signature(obj)
        if signature.return_annotation in ("GradientTransformation", jgd.GradientTransformation):
            found.add(name)
        elif signature.return_annotation is inspect.Signature.empty and all(
            p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            for p in signature.parameters.values()
        ):
            found.add(name) if isinstance(obj(), jgd.GradientTransformation) else None
    return found


def test_every_public_transform_factory_has_a_row():
    factories = transform_factories()
    assert {"adam", "chain", "apply_if_finite", "clip_by_norm", "bfgs"} <= factories  # the search finds them
    missing = factories - {c.factory for c in CASES.values()} - set(NOT_TRANSFORMS)
    assert not missing, f"add a row to tests/cases.py (or an exclusion, with its reason) for: {sorted(missing)}"
    assert set(NOT_TRANSFORMS) <= factories, "an exclusion that is no longer a public transform factory"
    assert {c.factory for c in CASES.values()} <= set(jgd.__all__)


def _slots(state):
    return next((tuple(s.slots) for s in transform_states(state) if s.slots), ())


@pytest.mark.parametrize("case", as_params(CASES.values()))
def test_a_row_builds_its_transform_with_the_slots_it_names(case):
    state = case.make().init(PARAMS)
    assert _slots(state) == case.slots
    if case.hyper is not None:
        value = {"learning_rate": 0.125, "decay": 0.5, "factor": 0.25, "rate": 0.25}.get(case.hyper, 1.5)
        read = {k: v for k, v in jgd.hyperparams(case.at(value).init(PARAMS)).items() if k.endswith(case.hyper)}
        assert any(float(v) == value for v in read.values()), read  # a wrapped transform's own may differ


@pytest.mark.parametrize("case", as_params(CASES.values()))
def test_a_row_takes_complex_leaves_as_it_says(case):
    mixed = {**PARAMS, "w1": PARAMS["w1"].astype(jnp.complex64)}
    if case.complex:
        state = case.make().init(mixed)
        assert _slots(state) == case.slots
        return
    message = r"params\['w1'\] has dtype complex64; " + (
        rf"{case.factory} does not take complex" if case.kind in (METHOD, BLOCK) else "jgd transforms need real"
    )
    with pytest.raises(ValueError, match=message):
        case.make().init(mixed)


@pytest.mark.parametrize("case", as_params(c for c in CASES.values() if not c.needs_value_fn))
def test_a_row_needs_params_as_it_says(case):
    tx = case.make()
    state = tx.init(PARAMS)
    if case.needs_params:
        with pytest.raises(ValueError, match="needs params"):
            tx.update(GRADS, state)
    else:
        updates, _ = tx.update(GRADS, state)
        assert jax.tree.structure(updates) == jax.tree.structure(PARAMS)
    updates, _ = tx.update(GRADS, state, PARAMS)
    assert all(np.isfinite(np.asarray(u)).all() for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("case", as_params(c for c in CASES.values() if c.needs_value_fn))
def test_a_second_order_row_needs_a_value_fn(case):
    tx = case.make()
    state = tx.init(PARAMS)
    with pytest.raises((ValueError, TypeError), match="value_fn"):
        tx.update(GRADS, state, PARAMS)


@pytest.mark.parametrize("case", as_params(CASES.values()))
def test_a_row_takes_state_dtype_as_it_says(case):
    if not case.state_dtype:
        with pytest.raises(TypeError, match="state_dtype"):
            case.make(state_dtype=jnp.bfloat16)
        return
    state = case.make(state_dtype=jnp.bfloat16).init(PARAMS)
    slots = next((s.slots for s in transform_states(state) if s.slots), {})
    assert {leaf.dtype for leaf in jax.tree.leaves(slots)} == ({jnp.dtype(jnp.bfloat16)} if case.slots else set())
