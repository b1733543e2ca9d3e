"""``state_dtype``: one dtype or one per slot, floating only, and no slot's dtype changes across updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from tests.cases import CASES, as_params, transform_states

# Every transform that takes state_dtype and holds slots, in its own forms; its main hyperparameter is given.
CASES_WITH_SLOTS = [c for c in CASES.values() if c.state_dtype and c.slots and c.peer is None]

# Hyperparameters as a jnp bfloat16 scalar, a numpy float32 scalar and a Python float (float64 under x64).
HYPERPARAMS = (jnp.asarray(0.1, jnp.bfloat16), np.float32(0.1), 0.1)


def three_updates(transforms, states, params):
    """One update per grads dtype (bfloat16, float32, float64) for each transform."""
    for dtype in (jnp.bfloat16, jnp.float32, jnp.float64):
        grads = jax.tree.map(lambda p, dtype=dtype: (p * 0.5 - 0.2).astype(dtype), params)
        states = tuple(tx.update(grads, s, params)[1] for tx, s in zip(transforms, states))
    return states


CONSTRUCTS = {
    "jit": lambda body, s: jax.jit(body)(s),
    "scan": lambda body, s: jax.lax.scan(lambda c, _: (body(c), None), s, None, length=1)[0],
    "while_loop": lambda body, s: jax.lax.while_loop(lambda c: c[0] < 1, lambda c: (c[0] + 1, body(c[1])), (0, s))[1],
    "cond": lambda body, s: jax.lax.cond(jnp.array(True), body, lambda c: c, s),
}


def dtypes(tree):
    return jax.tree.map(lambda x: jnp.result_type(x), tree)


@pytest.mark.parametrize("construct", list(CONSTRUCTS))
@pytest.mark.parametrize("case", as_params(CASES_WITH_SLOTS))
def test_no_slot_changes_dtype_across_updates(x64, case, construct):
    slot = case.slots[-1]
    params = {
        "half": jnp.linspace(-1, 1, 3, dtype=jnp.bfloat16),
        "single": jnp.ones((2, 2), jnp.float32),
        "double": jnp.ones(2, jnp.float64),
    }
    state_dtypes = (None, jnp.bfloat16, {slot: jnp.float32})
    transforms = tuple(case.at(h, state_dtype=d) for h, d in zip(HYPERPARAMS, state_dtypes))
    states = jax.eval_shape(lambda p: tuple(tx.init(p) for tx in transforms), params)
    # Tracing fixes every output dtype (and checks the scan / while / cond carries), so no compilation is needed.
    after = jax.eval_shape(lambda s: CONSTRUCTS[construct](lambda c: three_updates(transforms, c, params), s), states)
    assert dtypes(after) == dtypes(states)
    own, half, mapped = (_slot_leaves(state, case.factory) for state in after)
    assert {k for _, k, _ in own} == set(params)  # every param's slots are seen, whichever group holds them
    assert all(leaf.dtype == params[k].dtype for _, k, leaf in own)
    assert all(leaf.dtype == jnp.bfloat16 for _, _, leaf in half)
    assert all(leaf.dtype == (jnp.float32 if name == slot else params[k].dtype) for name, k, leaf in mapped)


# A method built of other methods holds their states as its own: muon's matrices' rule and jgd.adamw.
PARTS = {"muon": ("muon", "adamw")}


def _slot_leaves(state, factory: str) -> list[tuple[str, str, jax.ShapeDtypeStruct]]:
    """``(slot, param, leaf)`` for every slot leaf of the states the case's own transform made (the first with
    slots, and its other parts: a partition's groups each hold their own params' leaves, None at the others');
    a transform built inside it (scale_by_rms's numerator) keeps its own dtypes."""
    slotted = [s for s in transform_states(state) if s.slots]
    own = PARTS.get(factory, (slotted[0].origin.name,))
    return [
        (name, k, leaf)
        for s in slotted
        if s.origin.name in own
        for name, tree in s.slots.items()
        for k, leaf in tree.items()
        if leaf is not None
    ]


def test_a_mapping_sets_each_slot_and_leaves_the_others_alone():
    params = {"w": jnp.ones(4)}
    tx = jgd.adam(0.1, state_dtype={"mu": jnp.bfloat16})
    state = tx.init(params)
    assert state.slots["mu"]["w"].dtype == jnp.bfloat16 and state.slots["nu"]["w"].dtype == jnp.float32
    updates, state = tx.update({"w": jnp.full(4, 0.3)}, state, params)
    assert state.slots["mu"]["w"].dtype == jnp.bfloat16 and state.slots["nu"]["w"].dtype == jnp.float32
    full = jgd.adam(0.1).update({"w": jnp.full(4, 0.3)}, jgd.adam(0.1).init(params), params)[0]
    np.testing.assert_allclose(updates["w"], full["w"], rtol=1e-2)


# A complex dtype is a state dtype for complex params; for real ones init names the leaf (test_optax_habits.py).
@pytest.mark.parametrize("bad", [jnp.int32, np.uint8, bool, "not a dtype", {"nu": jnp.int8}])
def test_a_dtype_that_is_not_floating_is_refused(bad):
    with pytest.raises(ValueError, match="state_dtype"):
        jgd.adam(0.1, state_dtype=bad)


def test_an_unknown_slot_is_named_with_the_slots():
    with pytest.raises(ValueError, match=r"state_dtype names no slot \['m'\]; its slots are \['mu', 'nu'\]"):
        jgd.adam(0.1, state_dtype={"m": jnp.bfloat16})
