"""The methods large runs use, against the papers (NumPy) and against optax, plus the guarantees of every jgd method."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from jgd.base import Label
from jgd.state import transform_states
from tests import modern_reference as ref

STEPS = 50
# Variants that add coverage but not a new form: run with -m slow.
SLOW = {"radam_threshold", "lars_paper_no_decay", "adafactor_no_scale_no_clip", "adafactor_unfactored", "adamw_b1"}
SLOW |= {"no_nesterov", "adafactor_lr"}


def cases(table):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in table]


def matrices(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def not_bias(key):
    return key != "b"


WD_MASK = {"w": True, "stack": True, "b": False, "v": True, "s": True}


def optax_adafactor(
    learning_rate,
    min_dim_size_to_factor=128,
    decay_rate=0.8,
    decay_offset=0,
    multiply_by_parameter_scale=True,
    clipping_threshold=1.0,
    momentum=None,
    weight_decay_rate=None,
    eps=1e-30,
    factored=True,
    weight_decay_mask=None,
):
    """optax.adafactor's own chain, with its decay ``1 - t^(-c)`` in float64: optax computes it in float32."""

    def decay(i, c):
        return 1 - jnp.asarray(i + 1, jnp.float64) ** -c

    tx = [optax.scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps, decay)]
    if clipping_threshold is not None:
        tx.append(optax.clip_by_block_rms(clipping_threshold))
    tx.append(optax.scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        tx.append(optax.scale_by_param_block_rms())
    if momentum is not None:
        tx.append(optax.ema(momentum, debias=False, accumulator_dtype=jnp.float64))
    if weight_decay_rate is not None:
        tx.append(optax.add_decayed_weights(weight_decay_rate, mask=weight_decay_mask))
    return optax.chain(*tx, optax.scale(-1))


# jgd transform and optax transform set so that their forms agree.
OPTAX = {
    "radam": (lambda: jgd.radam(0.05), lambda: optax.radam(0.05)),
    "radam_threshold": (
        lambda: jgd.radam(0.05, b2=0.9, threshold=6.0),
        lambda: optax.radam(0.05, 0.9, 0.9, threshold=6),
    ),
    "adabelief": (lambda: jgd.adabelief(0.05), lambda: optax.adabelief(0.05)),
    "lion": (lambda: jgd.lion(0.01, weight_decay=1e-3), lambda: optax.lion(0.01)),
    "lion_mask": (
        lambda: jgd.lion(0.01, weight_decay=0.5, mask=matrices),
        lambda: optax.lion(0.01, weight_decay=0.5, mask=matrices),
    ),
    "lamb": (
        lambda: jgd.lamb(0.02, weight_decay=0.1, mask=WD_MASK),
        lambda: optax.lamb(0.02, weight_decay=0.1, mask=WD_MASK),
    ),
    "lars": (
        lambda: jgd.lars(0.5, weight_decay=0.01, trust_coefficient=0.02, form="optax"),
        lambda: optax.lars(0.5, weight_decay=0.01, trust_coefficient=0.02),
    ),
    "lars_masks_nesterov": (
        lambda: jgd.lars(0.5, 0.01, matrices, 0.02, 1e-9, matrices, 0.8, True, form="optax"),
        lambda: optax.lars(0.5, 0.01, matrices, 0.02, 1e-9, matrices, 0.8, True),
    ),
    "lars_paper_no_decay": (
        lambda: jgd.lars(0.5, trust_coefficient=0.02),
        lambda: optax.lars(0.5, trust_coefficient=0.02),
    ),
    "adafactor": (
        lambda: jgd.adafactor(0.05, min_dim_size_to_factor=4),
        lambda: optax_adafactor(0.05, min_dim_size_to_factor=4),
    ),
    "adafactor_momentum_decay": (
        lambda: jgd.adafactor(0.05, 4, 0.7, 0, True, 0.5, 0.9, 1e-3, 1e-20, weight_decay_mask=WD_MASK),
        lambda: optax_adafactor(0.05, 4, 0.7, 0, True, 0.5, 0.9, 1e-3, 1e-20, weight_decay_mask=WD_MASK),
    ),
    "adafactor_no_scale_no_clip": (
        lambda: jgd.adafactor(0.02, 4, multiply_by_parameter_scale=False, clipping_threshold=None),
        lambda: optax_adafactor(0.02, 4, multiply_by_parameter_scale=False, clipping_threshold=None),
    ),
    "adafactor_unfactored": (
        lambda: jgd.adafactor(0.05, factored=False),
        lambda: optax_adafactor(0.05, factored=False),
    ),
}

# jgd transform and NumPy reference written from the paper, with the same hyperparameters.
PAPER = {
    "radam": (lambda: jgd.radam(0.05), ref.radam(0.05, 0.9, 0.999, 1e-8, 5.0)),
    "adabelief": (lambda: jgd.adabelief(0.05, eps=1e-8, eps_root=1e-8), ref.adabelief(0.05, 0.9, 0.999, 1e-8)),
    "lion": (lambda: jgd.lion(0.01, weight_decay=0.5, mask=WD_MASK), ref.lion(0.01, 0.9, 0.99, 0.5, not_bias)),
    "lamb": (
        lambda: jgd.lamb(0.02, eps=1e-6, weight_decay=0.1, mask=WD_MASK),
        ref.lamb(0.02, 0.9, 0.999, 1e-6, 0.1, not_bias),
    ),
    "lars": (
        lambda: jgd.lars(0.5, weight_decay=0.01, weight_decay_mask=WD_MASK, trust_coefficient=0.02),
        ref.lars(0.5, 0.01, 0.02, 0.9, not_bias),
    ),
    "adafactor": (lambda: jgd.adafactor(min_dim_size_to_factor=4), ref.adafactor(None, 0.8, 1e-30, 1e-3, 1.0, 4)),
    "muon": (lambda: jgd.muon(0.02), ref.muon(0.02, 0.95, 1e-8, 0.9, 0.999)),
    "adafactor_lr": (
        lambda: jgd.adafactor(0.05, 4, clipping_threshold=0.5),
        ref.adafactor(0.05, 0.8, 1e-30, 1e-3, 0.5, 4),
    ),
}


@pytest.mark.parametrize("name", cases(OPTAX))
def test_matches_optax_trajectory(name, x64):
    make, make_optax = OPTAX[name]
    got, want = ref.trajectory(make(), STEPS), ref.trajectory(make_optax(), STEPS)
    assert max(np.abs(want[-1][k] - want[0][k]).max() for k in want[0]) > 1e-2, "the iterates must move"
    assert ref.max_relative_difference(got, want) <= 1e-10


@pytest.mark.parametrize("name", cases(PAPER))
def test_matches_paper_equations(name, x64):
    make, step = PAPER[name]
    got, want = ref.trajectory(make(), STEPS), ref.run(step, STEPS)
    assert ref.max_relative_difference(got, want) <= 1e-10


def test_lars_paper_and_optax_forms_differ_only_with_weight_decay(x64):
    paper = ref.trajectory(jgd.lars(0.5, weight_decay=0.01, trust_coefficient=0.02), 5)
    peer = ref.trajectory(jgd.lars(0.5, weight_decay=0.01, trust_coefficient=0.02, form="optax"), 5)
    assert ref.max_relative_difference(paper, peer) > 1e-6


def test_radam_takes_the_unadapted_step_until_the_variance_is_tractable(x64):
    # ρ_t ≥ 5 first at t = 6 with β2 = 0.999: the first five steps are momentum SGD with bias correction.
    got = ref.trajectory(jgd.radam(0.05), 5)
    want = ref.run(ref.radam(0.05, 0.9, 0.999, 1e-8, np.inf), 5)
    assert ref.max_relative_difference(got, want) <= 1e-12


def test_adafactor_state_of_a_4096_square_matrix_is_rows_plus_columns():
    """Measured without allocating: two 4096-vectors and a (1,) placeholder, not 4096² floats (64 MiB)."""
    params = {"kernel": jax.ShapeDtypeStruct((4096, 4096), jnp.float32)}
    state = jax.eval_shape(jgd.adafactor().init, params)
    slots = jax.tree.leaves(state.slots)
    assert sum(x.size * x.dtype.itemsize for x in slots) == (4096 + 4096 + 1) * 4  # 32 772 bytes
    assert sorted(x.shape for x in slots) == [(1,), (4096,), (4096,)]
    assert sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) < 33_000


def test_adafactor_factors_the_two_largest_axes():
    from jgd.methods.adafactor import factored_dims

    assert factored_dims((4096, 4096), 128) == (0, 1)
    assert factored_dims((8, 512, 256), 128) == (2, 1)
    assert factored_dims((512, 64), 128) is None
    assert factored_dims((4096,), 128) is None


@pytest.mark.slow
def test_adafactor_matches_optax_up_to_its_float32_decay(x64):
    """optax.adafactor itself: its β̂_t = 1 - t^(-0.8) is rounded to float32, which bounds the agreement."""
    got = ref.trajectory(jgd.adafactor(0.05, min_dim_size_to_factor=4), STEPS)
    want = ref.trajectory(optax.adafactor(0.05, min_dim_size_to_factor=4), STEPS)
    assert 1e-12 < ref.max_relative_difference(got, want) <= 1e-6


SCHEDULE_FREE = {
    "adamw": (
        lambda: jgd.schedule_free_adamw(0.05, b1=0.9, weight_decay=0.01),
        lambda: optax.contrib.schedule_free_adamw(0.05, b1=0.9, weight_decay=0.01),
    ),
    "adamw_b1": (
        lambda: jgd.schedule_free_adamw(0.02, b1=0.95, b2=0.99, eps=1e-6, weight_lr_power=1.0),
        lambda: optax.contrib.schedule_free_adamw(0.02, b1=0.95, b2=0.99, eps=1e-6, weight_lr_power=1.0),
    ),
    "sgd": (
        lambda: jgd.schedule_free_sgd(0.2, weight_decay=0.01),
        lambda: optax.contrib.schedule_free_sgd(0.2, weight_decay=0.01),
    ),
}


@pytest.mark.parametrize("name", cases(SCHEDULE_FREE))
def test_schedule_free_matches_optax_iterates_and_averages(name, x64):
    make, make_optax = SCHEDULE_FREE[name]
    got, averages = ref.trajectory(make(), STEPS, eval_fn=jgd.schedule_free_eval_params)
    want, want_averages = ref.trajectory(make_optax(), STEPS, eval_fn=optax.contrib.schedule_free_eval_params)
    assert ref.max_relative_difference(got, want) <= 1e-10
    assert ref.max_relative_difference(averages, want_averages) <= 1e-10
    assert ref.max_relative_difference(averages, got) > 1e-3, "the average differs from the gradient point"


def test_schedule_free_sgd_warmup_follows_the_paper(x64):
    """γ_t = γ min(1, t / T), weights γ_max,t², on Alg. 1 in NumPy (optax evaluates its warm-up one step apart)."""
    got = ref.trajectory(jgd.schedule_free_sgd(0.2, warmup_steps=10, b1=0.8), STEPS)
    assert ref.max_relative_difference(got, ref.run(ref.schedule_free_sgd(0.2, 10, 0.8), STEPS)) <= 1e-10


def muon_dims(stacked):
    from optax.contrib import MuonDimensionNumbers as Dims

    return {"w": Dims(), "stack": Dims(1, 2) if stacked else None, "b": None, "v": Dims(), "s": None}


MUON = {
    "optax_form": (
        lambda: jgd.muon(0.02, bias_correction=True),
        lambda: optax.contrib.muon(0.02),
    ),
    "stacked_decay_adam": (
        lambda: jgd.muon(
            0.02,
            beta=0.9,
            weight_decay=0.1,
            bias_correction=True,
            stacked_matrices=True,
            adam_weight_decay=0.05,
            adam_learning_rate=0.01,
            adam_b2=0.99,
        ),
        lambda: optax.contrib.muon(
            0.02,
            beta=0.9,
            weight_decay=0.1,
            adam_weight_decay=0.05,
            adam_learning_rate=0.01,
            adam_b2=0.99,
            muon_weight_dimension_numbers=muon_dims(True),
        ),
    ),
    "no_nesterov": (
        lambda: jgd.muon(0.02, bias_correction=True, nesterov=False),
        lambda: optax.contrib.muon(0.02, nesterov=False),
    ),
}


@pytest.mark.parametrize("name", cases(MUON))
def test_muon_matches_optax(name, x64):
    make, make_optax = MUON[name]
    got, want = ref.trajectory(make(), STEPS), ref.trajectory(make_optax(), STEPS)
    assert ref.max_relative_difference(got, want) <= 1e-10


def test_muon_orthogonalises():
    """Five steps bring every singular value into the quintic's band around 1 (about [0.7, 1.2])."""
    from jgd.methods.muon import orthogonalize

    x = jax.random.normal(jax.random.key(0), (3, 16, 8))
    s = jnp.linalg.svd(orthogonalize(x), compute_uv=False)
    assert s.shape == (3, 8) and float(s.min()) > 0.6 and float(s.max()) < 1.25


def test_muon_is_a_partition_of_its_matrices_and_adamw():
    """Muon's group holds one moment per matrix and nothing for the rest; the Adam group is jgd.adamw's state."""
    params = ref.init(jnp.float32)
    part = jax.eval_shape(jgd.muon(stacked_matrices=True).init, params)
    assert dict(part.members) == {"muon": ("stack", "v", "w"), "adam": ("b", "s")}
    assert all(isinstance(key, Label) for key in part.groups), "the groups' labels prefix their keys"
    muon_state, adam_state = part.groups["muon"][0], part.groups["adam"]
    assert adam_state.origin.name == "adamw"
    assert set(muon_state.slots) == {"mu"} and set(adam_state.slots) == {"mu", "nu"}
    assert {k for k, x in muon_state.slots["mu"].items() if x is not None} == {"stack", "v", "w"}
    assert {k for k, x in adam_state.slots["nu"].items() if x is not None} == {"b", "s"}


def test_muon_hyperparameters_are_keyed_by_group_and_a_plain_name_sets_both():
    params = ref.init(jnp.float32)
    state = jgd.muon(0.02).init(params)
    muon_names = {f"muon/{n}" for n in ("learning_rate", "beta", "eps", "weight_decay")}
    adam_names = {f"adam/{n}" for n in ("learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay")}
    assert set(jgd.hyperparams(state)) == muon_names | adam_names
    state = jgd.set_hyperparams(state, eps=1e-6, learning_rate=0.05)  # one eps and one η for both groups
    hp = jgd.hyperparams(state)
    assert [float(hp[f"{g}/{n}"]) for g in ("muon", "adam") for n in ("eps", "learning_rate")] == pytest.approx(
        [1e-6, 0.05, 1e-6, 0.05]
    )
    hp = jgd.hyperparams(jgd.set_hyperparams(state, {"adam/learning_rate": 0.01}))
    assert (float(hp["muon/learning_rate"]), float(hp["adam/learning_rate"])) == pytest.approx((0.05, 0.01))
    with_adam_rate = jgd.hyperparams(jgd.muon(0.02, adam_learning_rate=0.01, adam_b1=0.8).init(params))
    assert float(with_adam_rate["adam/learning_rate"]) == pytest.approx(0.01)
    assert float(with_adam_rate["muon/learning_rate"]) == pytest.approx(0.02)
    assert float(with_adam_rate["adam/b1"]) == pytest.approx(0.8)


def test_muon_names_a_wrong_adam_argument_as_written():
    with pytest.raises(ValueError, match="adam_b2"):
        jgd.muon(adam_b2=1.5)


# method(learning_rate, other) with `other` a second hyperparameter, its name, two values, and an invalid argument.
GUARANTEES = {
    "radam": (lambda lr, h: jgd.radam(lr, b2=h), "b2", (0.99, 0.9), {"threshold": -1.0}),
    "adabelief": (lambda lr, h: jgd.adabelief(lr, b1=h), "b1", (0.9, 0.5), {"eps_root": -1e-8}),
    "lion": (lambda lr, h: jgd.lion(lr, weight_decay=h), "weight_decay", (0.0, 0.5), {"b2": 1.0}),
    "lamb": (lambda lr, h: jgd.lamb(lr, weight_decay=h, mask=WD_MASK), "weight_decay", (0.0, 0.1), {"eps": -1.0}),
    "lars": (lambda lr, h: jgd.lars(lr, trust_coefficient=h), "trust_coefficient", (0.01, 0.1), {"momentum": 1.5}),
    "adafactor": (
        lambda lr, h: jgd.adafactor(lr, 4, decay_rate=h, momentum=0.9),
        "decay_rate",
        (0.8, 0.5),
        {"clipping_threshold": 0.0},
    ),
    "schedule_free_adamw": (
        lambda lr, h: jgd.schedule_free_adamw(lr, b1=h, weight_decay=0.01),
        "b1",
        (0.9, 0.5),
        {"weight_lr_power": -2.0},
    ),
    "schedule_free_sgd": (lambda lr, h: jgd.schedule_free_sgd(lr, b1=h), "b1", (0.9, 0.5), {"b1": 0.0}),
    "muon": (lambda lr, h: jgd.muon(lr, beta=h, stacked_matrices=True), "beta", (0.95, 0.5), {"adam_b2": -0.1}),
}


def slots(state):
    """The slots of every jgd state in ``state`` (a method built of groups, muon, holds several)."""
    return [s.slots for s in transform_states(state)]


def _run(tx, params, steps=3):
    """A few steps with a fixed gradient: cheap to trace and to run eagerly."""
    grads = jax.tree.map(lambda p: jnp.cos(3 * p + 1), params)
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
        params = jgd.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("name", GUARANTEES)
def test_jit_equals_no_jit_and_vmap_equals_a_loop(name):
    make, _, (h0, h1), _ = GUARANTEES[name]
    params = ref.init(jnp.float32)
    lrs, others = jnp.asarray([0.01, 0.03]), jnp.asarray([h0, h1])
    alone = jax.jit(lambda lr, h: _run(make(lr, h), params, steps=2)[0])
    eager, _ = _run(make(0.01, h0), params, steps=2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), eager, alone(lrs[0], others[0]))
    swept = jax.jit(jax.vmap(lambda lr, h: _run(make(lr, h), params, steps=2)[0]))(lrs, others)
    for i in range(2):
        one = alone(lrs[i], others[i])
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6), swept, one)
    assert not np.allclose(swept["w"][0], swept["w"][1]), "the sweep must change the result"


@pytest.mark.parametrize("name", GUARANTEES)
def test_set_hyperparams_does_not_recompile(name):
    make, other, (h0, h1), _ = GUARANTEES[name]
    tx, traces = make(0.01, h0), []

    @jax.jit
    def step(params, state):
        traces.append(1)
        updates, state = tx.update(jax.tree.map(jnp.cos, params), state, params)
        return jgd.apply_updates(params, updates), state

    params = ref.init(jnp.float32)
    state = tx.init(params)
    params, state = step(params, state)
    state = jgd.set_hyperparams(state, learning_rate=0.02, **{other: h1})
    values = jgd.hyperparams(state)  # muon keys its groups' names by their labels: muon/learning_rate, ...
    rates = [v for k, v in values.items() if k.rpartition("/")[-1] == "learning_rate"]
    assert rates and [float(v) for v in rates] == pytest.approx([0.02] * len(rates))
    assert [float(v) for k, v in values.items() if k.rpartition("/")[-1] == other] == pytest.approx([h1])
    step(params, state)
    assert len(traces) == 1


@pytest.mark.parametrize("name", GUARANTEES)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, pytest.param(jnp.float32, marks=pytest.mark.slow)])
def test_trees_keep_their_dtypes(name, dtype):
    make = GUARANTEES[name][0]
    params = ref.init(dtype)
    new, state = jax.jit(lambda p: _run(make(0.01, GUARANTEES[name][2][0]), p, steps=2))(params)
    assert all(new[k].dtype == dtype and new[k].shape == params[k].shape for k in params)
    assert all(np.isfinite(np.asarray(new[k], np.float32)).all() for k in params)
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(slots(state)))


@pytest.mark.parametrize("name", GUARANTEES)
def test_invalid_values_raise_naming_the_parameter(name):
    make, _, (h0, _), bad = GUARANTEES[name]
    with pytest.raises(ValueError, match="learning_rate"):
        make(-0.1, h0)
    factory = getattr(jgd, name)  # the guarantee cases are keyed by the public name
    (key,) = bad
    with pytest.raises(ValueError, match=key):
        factory(**bad)


def test_state_dtype_sets_the_slots():
    params = ref.init(jnp.float32)
    for tx in (
        jgd.lion(state_dtype=jnp.bfloat16),
        jgd.adafactor(state_dtype=jnp.bfloat16),
        jgd.muon(state_dtype=jnp.bfloat16),
    ):
        _, state = _run(tx, params, steps=1)
        assert {leaf.dtype for leaf in jax.tree.leaves(slots(state))} == {jnp.dtype(jnp.bfloat16)}
