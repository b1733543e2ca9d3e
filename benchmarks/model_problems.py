"""Three small training problems for comparing optimizers: ill-conditioned least squares, a digits MLP, a digits CNN.

Each is a :class:`Problem`: initial parameters, the loss of a batch, the batch of step ``t`` (a function of a
traced ``t``, so a whole training is one ``lax.scan``), and the loss to measure progress by. Used by
benchmarks/preconditioners.py and notebooks/preconditioners.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jgd.experiment.train.data import load_dataset
from jgd.experiment.train.models import MLP


@dataclass(frozen=True)
class Problem:
    """A training problem: ``loss(params, batch(t))`` is step ``t``'s loss, ``eval_loss(params)`` the one to report.

    ``budget`` and ``quick_budget`` are ``(steps, eval_every)``: the steps a method gets, and how often the
    loss is measured.
    """

    name: str
    description: str
    init: Any
    loss: Callable[[Any, Any], jax.Array]
    batch: Callable[[jax.Array], Any]
    eval_loss: Callable[[Any], jax.Array]
    budget: tuple[int, int]
    quick_budget: tuple[int, int]


def input_factor(dim: int = 64, condition: float = 1e3, seed: int = 0) -> np.ndarray:
    """``A = D Q``: inputs ``x = z A`` (``z`` standard normal) have covariance ``Σ = Aᵀ A`` of condition ``condition``.

    ``D`` is diagonal with log-spaced entries from 1 to ``condition^-½``; ``Q`` is a random rotation, so the
    ill-conditioning is not along the coordinate axes.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return (np.logspace(0.0, -0.5 * np.log10(condition), dim)[:, None] * q).astype(np.float32)


def least_squares(dim: int = 64, batch_size: int = 128, condition: float = 1e3, seed: int = 0) -> Problem:
    """A ``dim × dim`` weight fitted to ``y = x W*`` from a fresh batch every step; the loss is the excess risk."""
    factor = jnp.asarray(input_factor(dim, condition, seed))
    covariance = factor.T @ factor
    target = jax.random.normal(jax.random.key(seed + 1), (dim, dim)) / np.sqrt(dim)
    key = jax.random.key(seed + 2)

    def batch(t):
        x = jax.random.normal(jax.random.fold_in(key, t), (batch_size, dim)) @ factor
        return x, x @ target

    def loss(params, batch):
        x, y = batch
        return 0.5 * jnp.mean(jnp.sum((x @ params["w"] - y) ** 2, axis=-1))

    def eval_loss(params):
        delta = params["w"] - target
        return 0.5 * jnp.trace(delta.T @ covariance @ delta)

    return Problem(
        "least_squares",
        f"{dim}×{dim} weight, rotated inputs of covariance condition number {condition:.0e}, batches of {batch_size}",
        {"w": jnp.zeros((dim, dim))},
        loss,
        batch,
        eval_loss,
        budget=(600, 10),
        quick_budget=(100, 10),
    )


def _cross_entropy(logits, labels):
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0])


def _classifier(name, description, model, x, y, batch_size, budget, quick_budget, seed) -> Problem:
    """A classifier trained on ``x, y`` in batches of ``batch_size``, each epoch a fresh permutation."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    init = model.init(jax.random.key(seed), x[:1])["params"]
    rng = np.random.default_rng(seed)
    per_epoch = len(x) // batch_size
    epochs = -(-budget[0] // per_epoch) + 2  # the timing runs a few steps past the budget
    order = np.concatenate([rng.permutation(len(x))[: per_epoch * batch_size] for _ in range(epochs)])
    order = jnp.asarray(order.reshape(-1, batch_size))

    def loss(params, batch):
        return _cross_entropy(model.apply({"params": params}, batch[0]), batch[1])

    def batch(t):
        index = order[t % len(order)]
        return x[index], y[index]

    return Problem(name, description, init, loss, batch, lambda p: loss(p, (x, y)), budget, quick_budget)


class ConvNet(nn.Module):
    """3×3 conv (8) → ReLU → 2×2 average pool → 3×3 conv (16) → ReLU → dense (10), on 8×8×1 images."""

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], 8, 8, 1)
        x = nn.avg_pool(nn.relu(nn.Conv(8, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def digits_mlp(seed: int = 0) -> Problem:
    """The MLP of configs/compare_digits.yaml (64-128-10, ReLU, He initialization) in batches of 32."""
    data = load_dataset("digits")
    model = MLP((128,), data.num_classes)
    return _classifier(
        "digits_mlp",
        "64-128-10 ReLU MLP on digits, batches of 32, loss on the whole training split",
        model,
        data.x_train,
        data.y_train,
        32,
        (600, 20),
        (120, 20),
        seed,
    )


def digits_conv(seed: int = 0) -> Problem:
    """:class:`ConvNet` on the digits as 8×8 images, batches of 64."""
    data = load_dataset("digits")
    return _classifier(
        "digits_conv",
        "conv 3×3×8, avg pool 2, conv 3×3×16, dense 10 on digits 8×8 images, batches of 64",
        ConvNet(),
        data.x_train,
        data.y_train,
        64,
        (400, 40),
        (80, 40),
        seed,
    )


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "least_squares": least_squares,
    "digits_mlp": digits_mlp,
    "digits_conv": digits_conv,
}
