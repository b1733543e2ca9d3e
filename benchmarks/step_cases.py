"""What benchmarks/update_step.py measures (the methods of both libraries and the trees) and how it times them.

``time_interleaved`` is the benchmarks' shared timing loop: each run's compiled function called in turn, so
that every run sees the same machine, a median taken afterwards.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax
import optax.contrib

import jgd

# (jgd, optax, slots): the same method with agreeing conventions.
METHODS = {
    "sgd": (lambda: jgd.sgd(1e-3), lambda: optax.sgd(1e-3), 0),
    "momentum": (lambda: jgd.momentum(1e-3, 0.9), lambda: optax.sgd(1e-3, momentum=0.9), 1),
    "nesterov": (lambda: jgd.nesterov(1e-3, 0.9), lambda: optax.sgd(1e-3, momentum=0.9, nesterov=True), 1),
    "adagrad": (
        lambda: jgd.adagrad(1e-3, eps=0.0, eps_root=1e-7, initial_accumulator=0.1),
        lambda: optax.adagrad(1e-3),
        1,
    ),
    "adadelta": (lambda: jgd.adadelta(1.0, rho=0.9), lambda: optax.adadelta(1.0), 2),
    "rmsprop": (lambda: jgd.rmsprop(1e-3, eps=0.0, eps_root=1e-8), lambda: optax.rmsprop(1e-3), 1),
    "adam": (lambda: jgd.adam(1e-3), lambda: optax.adam(1e-3), 2),
    "adamax": (lambda: jgd.adamax(1e-3), lambda: optax.adamax(1e-3), 2),
    "nadam": (lambda: jgd.nadam(1e-3, momentum_decay=None), lambda: optax.nadam(1e-3), 2),
    # The methods large runs use (slots: param-sized arrays; adafactor's factored statistics count as 0).
    "adamw": (lambda: jgd.adamw(1e-3, weight_decay=1e-4), lambda: optax.adamw(1e-3, weight_decay=1e-4), 2),
    "lion": (lambda: jgd.lion(1e-4, weight_decay=1e-3), lambda: optax.lion(1e-4, weight_decay=1e-3), 1),
    "radam": (lambda: jgd.radam(1e-3), lambda: optax.radam(1e-3), 2),
    "adabelief": (lambda: jgd.adabelief(1e-3), lambda: optax.adabelief(1e-3), 2),
    "lamb": (lambda: jgd.lamb(1e-3), lambda: optax.lamb(1e-3), 2),
    "lars": (lambda: jgd.lars(1e-3, form="optax"), lambda: optax.lars(1e-3), 1),
    "adafactor": (lambda: jgd.adafactor(1e-3), lambda: optax.adafactor(1e-3), 0),
    # With a decay: optax drops a zero one, which jgd (its decay is data, settable later) cannot know of.
    "schedule_free_adamw": (
        lambda: jgd.schedule_free_adamw(1e-3, weight_decay=1e-4),
        lambda: optax.contrib.schedule_free_adamw(1e-3, weight_decay=1e-4),
        2,
    ),
    "muon": (lambda: jgd.muon(0.02, bias_correction=True), lambda: optax.contrib.muon(0.02), 2),
}


DEFAULT_METHODS = ["sgd", "momentum", "nesterov", "adam", "adamw", "lion"]


def resnet18_shapes() -> list[tuple[int, ...]]:
    """Trainable leaves of a ResNet-18 (convolutions, batch-norm scale and bias, classifier): 62 leaves, 11.7M."""
    shapes = [(7, 7, 3, 64), (64,), (64,)]
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            shapes += [(3, 3, cin, cout), (cout,), (cout,), (3, 3, cout, cout), (cout,), (cout,)]
            if block == 0 and (stride != 1 or cin != cout):
                shapes += [(1, 1, cin, cout), (cout,), (cout,)]
            cin = cout
    return [*shapes, (512, 1000), (1000,)]


def resnet_96_shapes() -> list[tuple[int, ...]]:
    """A CIFAR ResNet-32 (widths 16, 32, 64, five basic blocks a stage): the stem's kernel and batch norm,
    15 blocks of two kernels and two batch norms, the 1x1 projections where the width doubles and the
    classifier's kernel: 96 leaves, 0.46M params, most of them small."""
    shapes, cin = [(3, 3, 3, 16), (16,), (16,)], 16
    for cout in (16, 32, 64):
        for _ in range(5):
            shapes += [(3, 3, cin, cout), (cout,), (cout,), (3, 3, cout, cout), (cout,), (cout,)]
            if cin != cout:
                shapes.append((1, 1, cin, cout))
            cin = cout
    return [*shapes, (64, 10)]


# name -> shapes, given the one leaf's size (16M by default).
TREES = {
    "one_leaf": lambda size: [(size,)],
    "resnet18_like": lambda size: resnet18_shapes(),
    "resnet_96": lambda size: resnet_96_shapes(),
    "leaves_300": lambda size: [(3500,)] * 300,
    "leaves_1000": lambda size: [(3500,)] * 1000,
    "leaves_3000": lambda size: [(3500,)] * 3000,
}
DEFAULT_TREES = ["one_leaf", "resnet18_like", "resnet_96"]


def make_tree(shapes, seed):
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return {f"p{i:04d}": jax.random.normal(k, s, jnp.float32) * 0.01 for i, (k, s) in enumerate(zip(keys, shapes))}


def time_interleaved(runs: dict[str, dict], repeats: int) -> None:
    """Calls each run's ``fn(*args)`` in turn ``repeats`` times, appending to its ``times``: each sees the same
    machine. The order reverses every repeat (A B C, C B A, ...), so that a drifting load favours none.
    ``fn`` returns the new ``args[:2]`` (params and state, donated); runs may share one ``args`` list."""
    for repeat in range(repeats):
        for run in list(runs.values())[:: -1 if repeat % 2 else 1]:
            params, state, grads = run["args"]
            start = time.perf_counter()
            run["args"][:2] = jax.block_until_ready(run["fn"](params, state, grads))
            run["times"].append(time.perf_counter() - start)
