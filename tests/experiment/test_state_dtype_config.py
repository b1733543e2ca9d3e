"""``optimizer.state_dtype`` in a config: each YAML form builds the Python call's state, errors name the field,
the written config reads back to the same run, and the state's bytes a parameter are what the arrays hold."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import jgd
from jgd.experiment.config.optimizers import build_optimizer, state_bytes_per_param, with_values
from jgd.experiment.config.reader import load_config, parse_config
from jgd.experiment.config.writer import to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# A weight matrix above quantized's default min_size (4096 elements) and a bias below it.
PARAMS = {"w": jnp.linspace(-1.0, 1.0, 64 * 128).reshape(64, 128), "b": jnp.linspace(-0.5, 0.5, 128)}
GRADS = jax.tree.map(lambda p: jnp.sin(3.0 * p) + 0.01, PARAMS)

# Each YAML form with the Python state_dtype it stands for.
FORMS = [
    ("bfloat16", jnp.bfloat16),
    ("float16", jnp.float16),
    ({"quantized": {}}, jgd.quantized()),
    ({"quantized": None}, jgd.quantized()),
    (
        {"quantized": {"bits": 4, "block_size": 64, "rounding": "nearest", "min_size": 0}},
        jgd.quantized(4, block_size=64, rounding="nearest", min_size=0),
    ),
    ({"quantized": {"bits": 4, "normalization": "rank1"}}, jgd.quantized(4, normalization="rank1")),
    ({"stochastic": "bfloat16"}, jgd.stochastic(jnp.bfloat16)),
    ({"mu": {"quantized": {"bits": 8}}, "nu": "bfloat16"}, {"mu": jgd.quantized(bits=8), "nu": jnp.bfloat16}),
    ({"nu": {"stochastic": "bfloat16"}}, {"nu": jgd.stochastic()}),
]


def _adam(state_dtype):
    return parse_config({"optimizer": {"name": "adam", "learning_rate": 0.01, "state_dtype": state_dtype}})


def _shapes(tx):
    return jax.tree.map(lambda x: (x.shape, x.dtype), jax.eval_shape(tx.init, PARAMS))


def _one_step(tx):
    """The state's leaves after one update."""
    _, state = jax.jit(tx.update)(GRADS, tx.init(PARAMS), PARAMS)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def _stochastic(state_dtype):
    values = state_dtype.values() if isinstance(state_dtype, dict) else [state_dtype]
    return any(isinstance(form, type(jgd.stochastic())) for form in values)


@pytest.mark.parametrize(("spelled", "python"), FORMS, ids=[str(form) for form, _ in FORMS])
def test_each_form_builds_the_state_of_the_python_call(spelled, python):
    from_yaml = build_optimizer(_adam(spelled).optimizer)
    reference = jgd.adam(0.01, state_dtype=python)
    # The structure holds each quantized slot's settings (bits, block size, rounding, rank-1), and which leaves
    # are quantized (min_size).
    assert _shapes(from_yaml) == _shapes(reference)
    if _stochastic(python):
        # A stochastic form differs from its plain dtype only in how an update writes the slots.
        for leaf, expected in zip(_one_step(from_yaml), _one_step(reference)):
            np.testing.assert_array_equal(leaf, expected)


def test_the_forms_reach_the_state():
    # The comparisons above would pass if every form were dropped on both sides: each must change the state.
    def leaf_kinds(spelled):
        state = jax.eval_shape(build_optimizer(_adam(spelled).optimizer).init, PARAMS)
        return [
            (type(x).__name__, str(x.dtype))
            for x in jax.tree.leaves(state.slots, is_leaf=lambda x: isinstance(x, jgd.QuantizedArray))
        ]

    assert set(leaf_kinds(None)) == {("ShapeDtypeStruct", "float32")}
    assert ("ShapeDtypeStruct", "bfloat16") in leaf_kinds({"stochastic": "bfloat16"})
    assert ("QuantizedArray", "float32") in leaf_kinds({"quantized": {}})
    stochastic = _one_step(build_optimizer(_adam({"stochastic": "bfloat16"}).optimizer))
    nearest = _one_step(build_optimizer(_adam("bfloat16").optimizer))
    assert any(not np.array_equal(a, b) for a, b in zip(stochastic, nearest))


@pytest.mark.parametrize(("spelled", "python"), FORMS, ids=[str(form) for form, _ in FORMS])
def test_the_written_config_reads_back_to_the_same_run(spelled, python):
    config = parse_config(
        {
            "methods": [
                {"label": "low", "optimizer": {"name": "adam", "state_dtype": spelled}},
                {"optimizer": {"name": "sgd"}},
            ]
        }
    )
    echoed = yaml.safe_load(yaml.safe_dump(to_dict(config), sort_keys=False))
    assert parse_config(echoed) == config


def test_the_written_form_is_one_spelling():
    spelled = {"quantized": {"bits": 8, "block_size": 256, "rounding": "stochastic", "min_size": 1024}}
    assert to_dict(_adam(spelled).optimizer)["state_dtype"] == {"quantized": {"bits": 8, "min_size": 1024}}
    assert to_dict(_adam({"quantized": {}}).optimizer)["state_dtype"] == {"quantized": {"bits": 8}}
    assert to_dict(_adam({"stochastic": None}).optimizer)["state_dtype"] == {"stochastic": "bfloat16"}
    assert to_dict(_adam("f4").optimizer)["state_dtype"] == "float32"
    assert "state_dtype" not in to_dict(parse_config({"optimizer": {"name": "adam"}}).optimizer)


def _method(optimizer):
    return {"methods": [{"optimizer": {"name": "adam"}}, {"optimizer": optimizer}]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            _method({"name": "adam", "state_dtype": "float33"}),
            r"^methods\[1\]\.optimizer\.state_dtype must be a floating",
        ),
        (_method({"name": "adam", "state_dtype": "int8"}), r"^methods\[1\]\.optimizer\.state_dtype must be a floating"),
        (
            _method({"name": "adam", "state_dtype": "complex64"}),
            r"^methods\[1\]\.optimizer\.state_dtype must be a float",
        ),
        (
            _method({"name": "adam", "state_dtype": {"quantized": {"bits": 5}}}),
            r"^methods\[1\]\.optimizer\.state_dtype\.quantized\.bits must be 4 or 8, got 5",
        ),
        (
            _method({"name": "adam", "state_dtype": {"quantized": {"bits": 8.0}}}),
            r"^methods\[1\]\.optimizer\.state_dtype\.quantized\.bits must be an integer",
        ),
        (
            _method({"name": "adam", "state_dtype": {"mv": {"quantized": {"bits": 8}}}}),
            r"^methods\[1\]\.optimizer\.state_dtype\.mv is neither a slot of adam \(mu, nu\)",
        ),
        (
            _method({"name": "adam", "state_dtype": {"quantized": {"bit": 8}}}),
            r"^methods\[1\]\.optimizer\.state_dtype\.quantized\.bit is not a known field; expected one of: bits, "
            r"block_size, rounding, min_size",
        ),
        (
            _method({"name": "adam", "state_dtype": {"mu": {"stochastic": "float16"}}}),
            r"^methods\[1\]\.optimizer\.state_dtype\.mu\.stochastic must be bfloat16",
        ),
        (
            _method({"name": "adam", "state_dtype": {"quantized": {}, "nu": "bfloat16"}}),
            r"^methods\[1\]\.optimizer\.state_dtype must be a floating",
        ),
        (
            {"optimizer": {"name": "adam", "state_dtype": "float64"}},  # the suite runs without x64
            r"^optimizer\.state_dtype 'float64' needs 64-bit floats",
        ),
        (
            {"optimizer": {"name": "sgd", "state_dtype": "bfloat16"}},
            r"^optimizer\.state_dtype cannot be used with sgd as configured: its state has no slots",
        ),
        (
            {"optimizer": {"name": "optax.adam", "learning_rate": 0.1, "state_dtype": "bfloat16"}},
            r"^optimizer\.state_dtype cannot be used with optax\.adam: it takes no state_dtype",
        ),
        (
            {"optimizer": {"name": "lbfgs", "state_dtype": {"quantized": {}}}},
            r"^optimizer\.state_dtype cannot be used with lbfgs",
        ),
        (
            {
                "optimizer": {"name": "adam", "state_dtype": "bfloat16"},
                "sweep": {"grid": {"learning_rate": [0.1], "state_dtype": ["float32", "bfloat16"]}},
            },
            r"^sweep\.grid\.state_dtype cannot be swept: the state's form is part of the compiled program",
        ),
        (
            {
                "optimizer": {"name": "adam"},
                "sweep": {"random": {"samples": 2, "space": {"state_dtype": {"quantized": {"bits": [4, 8]}}}}},
            },
            r"^sweep\.random\.space\.state_dtype cannot be swept",
        ),
    ],
)
def test_errors_name_the_field(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def test_a_swept_method_keeps_its_state_dtype():
    config = parse_config(
        {
            "optimizer": {"name": "adam", "state_dtype": {"nu": {"quantized": {"bits": 4}}}},
            "sweep": {"grid": {"learning_rate": [0.01, 0.1]}},
        }
    )

    def init(learning_rate):  # as the sweep builds each setting's transform, inside jax.vmap
        return build_optimizer(with_values(config.optimizer, {"learning_rate": learning_rate})).init(PARAMS)

    state = jax.eval_shape(jax.vmap(init), jax.ShapeDtypeStruct((2,), jnp.float32))
    assert isinstance(state.slots["nu"]["w"], jgd.QuantizedArray) and state.slots["nu"]["w"].bits == 4


def test_state_bytes_count_every_leaf():
    n = sum(p.size for p in jax.tree.leaves(PARAMS))
    adam = build_optimizer(_adam(None).optimizer)
    # mu and nu in float32, the int32 step count, and five float32 hyperparameters held twice (current values
    # and the transform's constants).
    assert state_bytes_per_param(adam, PARAMS) == (2 * 4 * n + 4 + 2 * 5 * 4) / n
    big = {"w": jax.ShapeDtypeStruct((512, 1024), jnp.float32), "v": jax.ShapeDtypeStruct((256, 256), jnp.float32)}
    eight_bit = state_bytes_per_param(build_optimizer(_adam({"quantized": {"bits": 8}}).optimizer), big)
    assert 2.0 < eight_bit < 2.2
    four_bit = state_bytes_per_param(build_optimizer(_adam({"quantized": {"bits": 4}}).optimizer), big)
    assert 1.0 < four_bit < 1.1


def test_the_bundled_lowbit_comparison():
    config = load_config(CONFIGS / "compare_digits_lowbit.yaml")
    assert parse_config(to_dict(config)) == config
    # The digits MLP's leaves (64-128-10): every method's state, as the summary computes it.
    params = {"w1": jnp.zeros((64, 128)), "b1": jnp.zeros(128), "w2": jnp.zeros((128, 10)), "b2": jnp.zeros(10)}
    size = {m.label: state_bytes_per_param(build_optimizer(m.optimizer), params) for m in config.methods}
    assert 8.0 < size["Adam float32"] < 8.01
    assert 2.0 < size["Adam 8-bit"] < 2.2 and 2.0 < size["Adam 8-bit nearest"] < 2.2
    assert 1.0 < size["Adam 4-bit"] < 1.3
    assert size["Adam bfloat16 stochastic"] == size["Adam bfloat16"] == pytest.approx(size["Adam float32"] - 4.0)
