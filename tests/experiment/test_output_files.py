"""Numbers in the results files: each float as the shortest decimal that reads back to it in its own dtype."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jgd.experiment.output_files import python_number, write_csv


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.float32(0.3), 0.3),
        (jnp.asarray(1e-3, jnp.float32), 0.001),
        (np.float32(1e30), 1e30),
        (np.float32(np.pi), 3.1415927),
        (np.float16(0.3), 0.3),
        (jnp.asarray(0.3, jnp.bfloat16), 0.3),
        (np.float64(0.1), 0.1),
        (0.30000001192092896, 0.30000001192092896),  # a Python float is already a float64
    ],
    ids=["float32", "jax-float32", "large", "pi", "float16", "bfloat16", "float64", "python"],
)
def test_a_float_is_its_shortest_decimal(value, expected):
    number = python_number(value)
    assert type(number) is float and repr(number) == repr(expected)
    assert np.asarray(number, np.asarray(value).dtype) == np.asarray(value)  # and reads back to the same value


def _significant_digits(text: str) -> int:
    return len(text.lstrip("-").split("e")[0].replace(".", "").strip("0"))


def test_shortest_decimals_read_back_exactly():
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000)).astype(np.float32)
    numbers = [python_number(v) for v in values]
    np.testing.assert_array_equal(np.asarray(numbers, np.float32), values)
    # No more digits than NumPy's own shortest spelling of the float32.
    for number, value in zip(numbers, values):
        shortest = np.format_float_scientific(value, unique=True)
        assert _significant_digits(repr(number)) <= _significant_digits(shortest), (number, shortest)


def test_other_scalars_keep_their_kind():
    assert python_number(np.int64(3)) == 3 and type(python_number(np.int64(3))) is int
    assert python_number(jnp.asarray(2, jnp.int32)) == 2 and type(python_number(jnp.asarray(2))) is int
    assert python_number(np.bool_(True)) is True
    assert np.isnan(python_number(np.float32("nan"))) and python_number(jnp.asarray(jnp.inf, jnp.bfloat16)) == np.inf


def test_written_files_hold_the_short_form(tmp_path):
    row = {"learning_rate": python_number(np.float32(0.3)), "seed": python_number(np.int64(1))}
    write_csv(tmp_path / "rows.csv", [row])
    assert (tmp_path / "rows.csv").read_text().splitlines() == ["learning_rate,seed", "0.3,1"]
    assert json.dumps(row) == '{"learning_rate": 0.3, "seed": 1}'
