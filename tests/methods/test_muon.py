"""jgd.muon as large runs use it: dimension numbers per leaf, the head and embeddings to Adam, Newton–Schulz
tables (Polar Express), Moonlight's RMS matching and NorMuon, against optax and against the papers in NumPy."""

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import jgd
from jgd.methods import newton_schulz
from tests import muon_reference as ref
from tests.modern_reference import max_relative_difference

STEPS = 50
Dims = jgd.MuonDimensionNumbers
OptaxDims = optax.contrib.MuonDimensionNumbers
CONV_DIMS = {"conv": Dims((0, 1, 2), 3), "stack": Dims(1, 2), "head": Dims(), "bias": None}


def optax_dims(head=True):
    return {
        "conv": OptaxDims((0, 1, 2), 3),
        "stack": OptaxDims(1, 2),
        "head": OptaxDims() if head else None,
        "bias": None,
    }


TABLE = ((4.0, -6.0, 2.5), (3.4, -4.7, 2.0), (2.0, -1.5, 0.5))
STACKED = {"conv": OptaxDims(2, 3), "stack": OptaxDims(1, 2), "head": None, "bias": None}
# jgd and optax set so that their forms agree, on a conv kernel, a stack of matrices, a head and a bias.
OPTAX = {
    "dimension_numbers": (
        lambda: jgd.muon(0.02, bias_correction=True, muon_weight_dimension_numbers=CONV_DIMS, adam_mask=False),
        lambda: optax.contrib.muon(0.02, muon_weight_dimension_numbers=optax_dims()),
    ),
    "default_head_to_adam_optax_dims_function": (
        lambda: jgd.muon(0.02, bias_correction=True, muon_weight_dimension_numbers=lambda p: optax_dims()),
        lambda: optax.contrib.muon(0.02, muon_weight_dimension_numbers=optax_dims(head=False)),
    ),
    "per_step_coeffs": (
        lambda: jgd.muon(0.02, TABLE, bias_correction=True, adam_mask=False),
        lambda: optax.contrib.muon(0.02, TABLE, ns_steps=3),
    ),
    "dion": (
        lambda: jgd.muon(0.02, "dion", bias_correction=True, flatten_conv=True, adam_mask=False),
        lambda: optax.contrib.muon(
            0.02, "dion", muon_weight_dimension_numbers={**optax_dims(), "stack": OptaxDims((0, 1), 2)}
        ),
    ),
    "consistent_rms_decay": (
        lambda: jgd.muon(
            0.02, beta=0.9, weight_decay=0.1, bias_correction=True, consistent_rms=0.2, adam_weight_decay=0.05,
            muon_weight_dimension_numbers=CONV_DIMS, weight_decay_mask={"conv": True, "stack": False, "head": True},
        ),
        lambda: optax.contrib.muon(
            0.02, beta=0.9, weight_decay=0.1, consistent_rms=0.2, adam_weight_decay=0.05,
            muon_weight_dimension_numbers=optax_dims(head=False),
            weight_decay_mask={"conv": True, "stack": False, "head": True, "bias": False},
        ),
    ),
    "no_nesterov_decay": (
        lambda: jgd.muon(0.02, weight_decay=0.05, nesterov=False, bias_correction=True, stacked_matrices=True),
        lambda: optax.contrib.muon(
            0.02, weight_decay=0.05, nesterov=False,
            muon_weight_dimension_numbers=STACKED,
        ),
    ),
}  # fmt: skip
SLOW = {"dion", "default_head_to_adam_optax_dims_function", "no_nesterov_decay", "per_step_coeffs"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in OPTAX])
def test_matches_optax(name, x64):
    make, make_optax = OPTAX[name]
    got = ref.trajectory(make(), ref.LAYERS, ref.layers_loss, STEPS)
    want = ref.trajectory(make_optax(), ref.LAYERS, ref.layers_loss, STEPS)
    assert max(np.abs(want[-1][k] - want[0][k]).max() for k in want[0]) > 1e-2, "the iterates must move"
    assert max_relative_difference(got, want) <= 1e-10


PAPERS = {
    "polar_express": (lambda: jgd.muon(0.02, "polar_express"), ref.polar_express_muon(0.02, 0.95, 1e-8)),
    "moonlight": (
        lambda: jgd.muon(0.02, eps=0.0, weight_decay=0.1, nesterov=False, consistent_rms=0.2),
        ref.moonlight(0.02, 0.95, 0.1),
    ),
    "normuon": (
        lambda: jgd.muon(0.02, weight_decay=0.1, nesterov=False, normuon=True, normuon_b2=0.9),
        ref.normuon(0.02, 0.95, 0.9, 1e-8, 0.1),
    ),
}


@pytest.mark.parametrize("name", PAPERS)
def test_matches_paper(name, x64):
    make, step = PAPERS[name]
    got = ref.trajectory(make(), ref.MATRICES, ref.matrices_loss, STEPS)
    want = ref.run(step, ref.MATRICES, ref.matrices_loss, STEPS)
    assert max(np.abs(want[-1][k] - want[0][k]).max() for k in want[0]) > 1e-2, "the iterates must move"
    assert max_relative_difference(got, want) <= 1e-10


def test_polar_express_table_is_the_papers_algorithm(x64):
    computed = np.asarray(ref.polar_express_coefficients(8))
    published = np.asarray(newton_schulz._POLAR_EXPRESS_RAW)
    np.testing.assert_allclose(computed[:6], published[:6], rtol=1e-12)
    np.testing.assert_allclose(computed, published, rtol=1e-8)  # the paper rounds the converged rows
    np.testing.assert_allclose(newton_schulz.POLAR_EXPRESS[:7], ref.with_safety(published[:7]), rtol=1e-15)


def test_polar_express_orthogonalises_better_than_the_quintic(x64):
    x = jax.random.normal(jax.random.key(0), (64, 32), jnp.float64)

    def error(ns_coeffs, steps):
        ns = newton_schulz.iteration(ns_coeffs, steps)
        o = newton_schulz.orthogonalize(x, ns.coefficients, steps, 1e-8, ns.norm_scale)
        return float(jnp.abs(jnp.linalg.svd(o, compute_uv=False) - 1).max())

    # max |σ - 1|: the quintic plateaus near 0.32; Polar Express is 0.12 after 5 steps, 0.002 after 6.
    assert error("polar_express", 5) < error("standard", 5) / 2
    assert error("polar_express", 6) < 0.01 < 0.3 < error("standard", 6)


def test_ns_steps_take_rows_of_a_table():
    assert newton_schulz.iteration("standard", None).coefficients == ((3.4445, -4.775, 2.0315),) * 5
    assert len(newton_schulz.iteration("polar_express", 10).coefficients) == 10
    assert newton_schulz.iteration("polar_express", 10).coefficients[-1] == (1.875, -1.25, 0.375)
    assert newton_schulz.iteration("dion", 3).coefficients == newton_schulz.DION[:3]
    assert newton_schulz.iteration(((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)), None).coefficients[1] == (4.0, 5.0, 6.0)


@pytest.mark.slow
def test_consistent_rms_and_normuon_set_the_update_rms():
    params = {"w": jax.random.normal(jax.random.key(1), (16, 48)), "v": jax.random.normal(jax.random.key(2), (32, 8))}
    grads = jax.tree.map(lambda p: jnp.sin(3 * p), params)
    for tx in (jgd.muon(0.1, "polar_express", ns_steps=8, consistent_rms=0.2), jgd.muon(0.1, normuon=True)):
        updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
        for u in updates.values():
            np.testing.assert_allclose(jnp.sqrt(jnp.mean(u**2)), 0.1 * 0.2, rtol=1e-2)


# Routing: a Linen CNN in a TrainState and an nnx CNN in nnx.Optimizer.
class LinenCNN(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = linen.relu(linen.Conv(4, (3, 3))(x))
        x = linen.relu(linen.Conv(6, (3, 3))(x)).mean(axis=(1, 2))
        return linen.Dense(10)(linen.relu(linen.Dense(8)(x)))


class NnxCNN(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(3, 6, rngs=rngs)
        self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(4, 6, (3, 3), rngs=rngs)
        self.linear1 = nnx.Linear(6, 8, rngs=rngs)
        self.linear2 = nnx.Linear(8, 10, rngs=rngs)

    def __call__(self, x, label):
        x = nnx.relu(self.conv2(nnx.relu(self.conv1(x)))).mean(axis=(1, 2)) + self.embed(label)
        return self.linear2(nnx.relu(self.linear1(x)))


IMAGES = jax.ShapeDtypeStruct((4, 6, 6, 1), jnp.float32)


def random_like(tree, seed):
    """Arrays shaped as ``tree``'s leaves: the routing needs gradients, not the model's (no conv to compile)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), tree)


def test_linen_train_state_sends_conv_kernels_to_muon_and_the_head_to_adam():
    params = random_like(jax.eval_shape(LinenCNN().init, jax.random.key(0), IMAGES)["params"], 0)
    state = train_state.TrainState.create(
        apply_fn=LinenCNN().apply, params=params, tx=jgd.muon(0.02, flatten_conv=True)
    )
    muon_leaves, adam_leaves = (dict(state.opt_state.members)[g] for g in ("muon", "adam"))
    assert muon_leaves == ("Conv_0/kernel", "Conv_1/kernel", "Dense_0/kernel")
    assert set(adam_leaves) == {"Conv_0/bias", "Conv_1/bias", "Dense_0/bias", "Dense_1/bias", "Dense_1/kernel"}
    grads = random_like(params, 1)
    new = jax.jit(lambda s: s.apply_gradients(grads=grads))(state)
    # First step: m̃ ∝ g, so the conv update is -η √max(1, O / (H W I)) NS(g as (H·W·I) × O).
    kernel = grads["Conv_1"]["kernel"]
    matrix = newton_schulz.orthogonalize(kernel.reshape(-1, kernel.shape[-1]))
    want = -0.02 * np.sqrt(max(1, 6 / 36)) * matrix.reshape(kernel.shape)
    got = new.params["Conv_1"]["kernel"] - params["Conv_1"]["kernel"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert jnp.linalg.svd(got.reshape(36, 6) / -0.02, compute_uv=False).min() > 0.6
    head = new.params["Dense_1"]["kernel"] - params["Dense_1"]["kernel"]
    np.testing.assert_allclose(jnp.abs(head), 0.02 * (0.9 * 0.1 / (1 - 0.81) + 1), rtol=1e-4)  # Adam's first step


def test_nnx_optimizer_routes_by_the_same_paths():
    model = nnx.eval_shape(lambda: NnxCNN(nnx.Rngs(0)))  # its weights drawn in NumPy: no initialiser to compile
    nnx.update(model, random_like(nnx.state(model, nnx.Param), 0))
    optimizer = nnx.Optimizer(model, jgd.muon(0.02, flatten_conv=True), wrt=nnx.Param)
    (part,) = jgd.trees.instances(nnx.as_pure(optimizer.opt_state), jgd.PartitionState)
    muon_leaves, adam_leaves = (dict(part.members)[g] for g in ("muon", "adam"))
    assert muon_leaves == ("conv1/kernel", "conv2/kernel", "linear1/kernel")
    assert {"embed/embedding", "linear2/kernel", "linear2/bias"} <= set(adam_leaves)

    @nnx.jit
    def step(model, optimizer, grads):
        optimizer.update(model, grads)

    before = model.conv2.kernel[...]
    grads = random_like(nnx.state(model, nnx.Param), 2)
    step(model, optimizer, grads)
    step(model, optimizer, grads)
    (part,) = jgd.trees.instances(nnx.as_pure(optimizer.opt_state), jgd.PartitionState)
    assert dict(part.members)["muon"] == muon_leaves
    moved = (model.conv2.kernel[...] - before).reshape(36, 6)
    assert jnp.linalg.svd(moved / -0.04, compute_uv=False).min() > 0.6  # two orthogonalised steps of m̃ ∝ g


def test_muon_adam_mask_names():
    def routed(*paths):
        params = {}
        for path in paths:
            node = params
            for key in path.split("/")[:-1]:
                node = node.setdefault(key, {})
            node[path.split("/")[-1]] = jnp.ones((2, 2))
        flags = jgd.masks.broadcast("mask", jgd.muon_adam_mask(params), params)
        return sorted(p for p, flag in flags if flag)

    assert routed("Dense_9/kernel", "Dense_10/kernel", "Conv_0/kernel") == ["Dense_10/kernel"]
    assert routed("params/Dense_0/kernel", "params/Dense_1/kernel") == ["params/Dense_1/kernel"]
    assert routed("fc1/kernel", "fc2/kernel", "lm_head/kernel", "wte/embedding") == ["lm_head/kernel", "wte/embedding"]
    assert routed("encoder/MlpBlock_0/Dense_0/kernel", "encoder/MlpBlock_0/Dense_1/kernel", "head/kernel") == [
        "head/kernel"
    ]
    assert routed("bert/layer/0/output/dense/kernel", "classifier/kernel") == ["classifier/kernel"]
    assert routed("Embed_0/embedding", "block/attention/out/kernel") == ["Embed_0/embedding"]


def test_adam_mask_and_dimension_numbers_override_the_defaults():
    params = {
        "Dense_0": {"kernel": jnp.ones((3, 4))},
        "Dense_1": {"kernel": jnp.ones((4, 2))},
        "stack": jnp.ones((2, 3, 3)),
    }

    def members(tx):
        return dict(tx.init(params).members)

    assert members(jgd.muon()) == {"muon": ("Dense_0/kernel",), "adam": ("Dense_1/kernel", "stack")}
    assert members(jgd.muon(adam_mask=False, stacked_matrices=True))["muon"] == (
        "Dense_0/kernel",
        "Dense_1/kernel",
        "stack",
    )
    assert members(jgd.muon(adam_mask={"Dense_0": True, "Dense_1": False, "stack": False}))["muon"] == (
        "Dense_1/kernel",
    )
    dims = {"Dense_0": None, "Dense_1": Dims(), "stack": OptaxDims(-1, -2)}
    assert members(jgd.muon(muon_weight_dimension_numbers=dims, adam_mask=False))["muon"] == ("Dense_1/kernel", "stack")


BAD = {
    "axis out of range": (dict(muon_weight_dimension_numbers={"w": Dims(0, 2), "b": None}), "numbers.*axis 2"),
    "spec on a vector": (dict(muon_weight_dimension_numbers=Dims()), "muon_weight_dimension_numbers.*'b'.*two axes"),
    "overlapping axes": (dict(muon_weight_dimension_numbers={"w": Dims(0, -2), "b": None}), "overlap"),
    "not a spec": (dict(muon_weight_dimension_numbers={"w": (0, 1), "b": None}), "or None, got int at w/0"),
    "coefficients of the wrong shape": (dict(ns_coeffs=(1.0, 2.0)), "ns_coeffs must have shape"),
    "a table of the wrong shape": (dict(ns_coeffs=((1.0, 2.0, 3.0, 4.0),)), "ns_coeffs must have shape"),
    "an unknown name": (dict(ns_coeffs="quintic"), "ns_coeffs 'quintic'"),
    "more steps than rows": (dict(ns_coeffs="dion", ns_steps=6), "ns_steps=6"),
    "no steps": (dict(ns_steps=0), "ns_steps"),
    "both default rules": (dict(flatten_conv=True, stacked_matrices=True), "flatten_conv and stacked_matrices"),
    "a rule and dimension numbers": (dict(flatten_conv=True, muon_weight_dimension_numbers={}), "flatten_conv"),
    "consistent_rms": (dict(consistent_rms=0.0), "consistent_rms"),
    "normuon_b2": (dict(normuon=True, normuon_b2=1.0), "normuon_b2"),
    "normuon_eps": (dict(normuon=True, normuon_eps=-1.0), "normuon_eps"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_arguments_raise_naming_the_argument(case):
    arguments, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        jgd.muon(**arguments).init({"w": jnp.ones((3, 4)), "b": jnp.ones(4)})


def _train(lr, b2, rms, steps=2):
    params = {"w": jnp.linspace(-1, 1, 12).reshape(3, 4), "b": jnp.ones(4)}
    tx = jgd.muon(lr, normuon=True, normuon_b2=b2, consistent_rms=rms)
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(jax.tree.map(lambda p: jnp.cos(3 * p + 1), params), state, params)
        params = jgd.apply_updates(params, updates)
    return params, state


def test_new_hyperparameters_are_data_vmap_and_set_without_recompiling():
    lrs, b2s, rmss = jnp.array([0.01, 0.03]), jnp.array([0.9, 0.5]), jnp.array([0.2, 0.3])
    swept = jax.jit(jax.vmap(lambda lr, b2, rms: _train(lr, b2, rms)[0]))(lrs, b2s, rmss)
    one = jax.jit(lambda lr, b2, rms: _train(lr, b2, rms)[0])
    for i in range(2):
        alone = one(lrs[i], b2s[i], rmss[i])
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6), swept, alone)
    assert not np.allclose(swept["w"][0], swept["w"][1])
    _, state = _train(0.01, 0.9, 0.2, steps=0)
    assert {"muon/consistent_rms", "muon/normuon_b2", "muon/normuon_eps"} <= set(jgd.hyperparams(state))
    tx, traces = jgd.muon(0.01, normuon=True), []

    @jax.jit
    def step(params, state):
        traces.append(1)
        return tx.update(jax.tree.map(jnp.cos, params), state, params)[1]

    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    state = step(params, tx.init(params))
    state = jgd.set_hyperparams(state, normuon_b2=0.5, consistent_rms=0.3)
    assert float(jgd.hyperparams(state)["muon/normuon_b2"]) == pytest.approx(0.5)
    step(params, state)
    assert len(traces) == 1


@pytest.mark.parametrize("reduction, output", [((3, 0), 1), (-1, (0, 2)), (2, 3)])
def test_matrix_form_of_any_axes_orthogonalises_as_optax(reduction, output, x64):
    """Axes in any order, several flattened, the others batch: the update is optax's (its own reshaping, vmapped)."""
    from optax.contrib._muon import orthogonalize_via_newton_schulz

    from jgd.methods.muon_matrices import matrix

    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 2, 5)))
    form = matrix("muon_weight_dimension_numbers", "x", Dims(reduction, output), x.shape)
    got = form.restore(newton_schulz.orthogonalize(form.canonical(x)))
    coefficients = jnp.asarray(newton_schulz.STANDARD[0])
    want = orthogonalize_via_newton_schulz(x, coefficients, 5, dimension_numbers=OptaxDims(reduction, output))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(form.restore(form.canonical(x)), x)
