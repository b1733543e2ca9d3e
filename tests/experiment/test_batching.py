"""Epoch sampling: shuffle, partition, iterate; each example once per epoch, a new order each epoch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jgd.experiment.train import batching

N = 10
# Full batch (gradient descent), a mini-batch that leaves a remainder, and single samples (SGD).
REGIMES = {"full": N, "mini": 3, "single": 1}


def _seen(indices, mask):
    indices, mask = np.asarray(indices), np.asarray(mask)
    return np.sort(indices[mask])


@pytest.mark.parametrize("batch_size", REGIMES.values(), ids=REGIMES.keys())
def test_epoch_order_covers_every_example_once(batch_size):
    indices, mask = batching.epoch_order(jax.random.key(0), N, batch_size)
    assert indices.shape == mask.shape == (batching.num_batches(N, batch_size), batch_size)
    np.testing.assert_array_equal(_seen(indices, mask), np.arange(N))


@pytest.mark.parametrize("batch_size", REGIMES.values(), ids=REGIMES.keys())
def test_scan_epoch_visits_every_example_once(batch_size):
    data = jnp.arange(N)

    def step(counts, batch, mask, key):
        return counts.at[batch].add(mask.astype(jnp.int32)), batch.shape[0]

    counts, sizes = jax.jit(lambda k: batching.scan_epoch(step, jnp.zeros(N, jnp.int32), data, k, batch_size))(
        jax.random.key(3)
    )
    np.testing.assert_array_equal(counts, np.ones(N))
    assert len(sizes) == batching.num_batches(N, batch_size)


@pytest.mark.parametrize("batch_size", [REGIMES["mini"], REGIMES["single"]], ids=["mini", "single"])
def test_order_changes_between_epochs_and_repeats_for_a_key(batch_size):
    key = jax.random.key(0)
    first, _ = batching.epoch_order(jax.random.fold_in(key, 1), N, batch_size)
    second, _ = batching.epoch_order(jax.random.fold_in(key, 2), N, batch_size)
    again, _ = batching.epoch_order(jax.random.fold_in(key, 1), N, batch_size)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)


def test_only_the_padding_is_masked():
    _, mask = batching.epoch_order(jax.random.key(0), 7, 3)
    np.testing.assert_array_equal(mask, [[True] * 3, [True] * 3, [True, False, False]])


def test_per_batch_keys_differ():
    def step(carry, batch, mask, key):
        return carry, jax.random.key_data(key)

    _, keys = batching.scan_epoch(step, 0, jnp.arange(6), jax.random.key(0), 2)
    assert len({tuple(np.asarray(k).ravel()) for k in keys}) == 3


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 40), batch_size=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_any_size_sees_each_example_once(n, batch_size, seed):
    batch_size = batching.resolve_batch_size(batch_size, n)
    indices, mask = batching.epoch_order(jax.random.key(seed), n, batch_size)
    np.testing.assert_array_equal(_seen(indices, mask), np.arange(n))
    assert mask.sum(axis=1).min() >= 1  # no batch is all padding


def test_resolve_batch_size():
    assert batching.resolve_batch_size(None, 5) == 5
    assert batching.resolve_batch_size(8, 5) == 5
    assert batching.resolve_batch_size(2, 5) == 2
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batching.resolve_batch_size(0, 5)
