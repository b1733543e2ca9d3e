"""Training with ``skip_nonfinite``: NaN and Inf gradients at random steps are skipped, counted, and given up on."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from jgd.experiment.config.reader import parse_config
from jgd.experiment.config.schema import TrainingConfig
from jgd.experiment.train import batching
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.models import MLP, init_variables
from jgd.experiment.train.training import fit
from tests.resumable_run import data as clean_data

BATCH, EPOCHS = 8, 4


class Faulty(nn.Module):
    """An MLP reading all features but the last, which flags examples whose training outputs are NaN (1) or Inf (2).

    Evaluation (``train=False``) ignores the flag, so only training steps on
    batches holding a flagged example get non-finite gradients.
    """

    @nn.compact
    def __call__(self, x, train=False, mask=None):
        outputs = MLP((16,), 3)(x[:, :-1], train, mask)
        if not train:
            return outputs
        flag = x[:, -1:]
        return outputs * jnp.where(flag == 1, jnp.nan, jnp.where(flag == 2, jnp.inf, 1.0))


def _data(flags):
    d = clean_data()

    def flagged(x, f):
        return np.concatenate([x, f[:, None].astype(np.float32)], axis=1)

    zeros = np.zeros(len(d.x_val))
    return Dataset(
        "faulty",
        flagged(d.x_train, flags),
        d.y_train,
        flagged(d.x_val, zeros),
        d.y_val,
        flagged(d.x_test, zeros),
        d.y_test,
        3,
    )


def _bad_steps(flags, key):
    """Per step of every epoch, whether its batch holds a flagged example: fit's batch order, rebuilt here."""
    bad = []
    for epoch in range(1, EPOCHS + 1):
        order_key, _ = jax.random.split(jax.random.fold_in(key, epoch))
        indices, mask = batching.epoch_order(order_key, len(flags), BATCH)
        bad.append(np.any((flags[np.asarray(indices)] > 0) & np.asarray(mask), axis=1))
    return np.stack(bad)


def _skip_by_hand(tx, bad):
    """``tx``, except that the steps ``bad`` marks change neither the params nor the state."""
    bad = jnp.asarray(bad.reshape(-1))

    def init(params):
        return tx.init(params), jnp.zeros((), jnp.int32)

    def update(grads, state, params=None):
        inner, step = state
        updates, new_inner = tx.update(grads, inner, params)
        skip = bad[step]
        updates = jax.tree.map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), updates)
        return updates, (jax.tree.map(lambda new, old: jnp.where(skip, old, new), new_inner, inner), step + 1)

    return jgd.GradientTransformation(init, update)


def _fit(tx, flags, key, **options):
    model = Faulty()
    variables = init_variables(model, jax.random.key(0), 7)
    return fit(model, variables, tx, _data(flags), key, TrainingConfig(epochs=EPOCHS, batch_size=BATCH, **options))


def test_injected_nan_and_inf_steps_are_skipped_and_counted():
    rng = np.random.default_rng(0)
    flags = np.zeros(60, np.int32)
    flags[rng.choice(60, 3, replace=False)] = [1, 1, 2]  # two NaN examples, one Inf
    key = jax.random.key(2)
    bad = _bad_steps(flags, key)
    assert 0 < bad.sum() < bad.size  # some steps of 8 examples hold a flagged one, not all

    guarded, history = _fit(jgd.adam(0.01), flags, key, skip_nonfinite=True)
    by_hand, _ = _fit(_skip_by_hand(jgd.adam(0.01), bad), flags, key)
    unguarded, _ = _fit(jgd.adam(0.01), flags, key)

    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(guarded.params))
    assert not all(np.all(np.isfinite(p)) for p in jax.tree.leaves(unguarded.params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), guarded.params, by_hand.params)
    assert [row["skipped_steps"] for row in history.epochs] == [0, *np.cumsum(bad.sum(axis=1))]
    assert all(np.isfinite(row["val_loss"]) for row in history.epochs)


def test_gives_up_after_too_many_non_finite_steps_in_a_row():
    flags = np.ones(60, np.int32)  # every step is non-finite
    with pytest.raises(FloatingPointError, match=r"gave up in epoch 1: 3 steps in a row had non-finite updates"):
        _fit(jgd.adam(0.01), flags, jax.random.key(0), skip_nonfinite=True, max_consecutive_nonfinite=3)


def test_nonfinite_config():
    training = parse_config({"training": {"skip_nonfinite": True, "max_consecutive_nonfinite": 3}}).training
    assert (training.skip_nonfinite, training.max_consecutive_nonfinite) == (True, 3)
    assert not parse_config({}).training.skip_nonfinite
    with pytest.raises(ValueError, match=r"training.skip_nonfinite must be true or false, got 'yes'"):
        parse_config({"training": {"skip_nonfinite": "yes"}})
    with pytest.raises(ValueError, match=r"training.max_consecutive_nonfinite must be an integer >= 1, got 0"):
        parse_config({"training": {"max_consecutive_nonfinite": 0}})
