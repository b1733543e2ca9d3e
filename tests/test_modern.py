"""The methods large runs use, against the papers (NumPy) and against optax, plus the guarantees of every jgd method."""

import jax
import numpy as np
import optax
import pytest

import jgd
from tests import modern_reference as ref

STEPS = 50


def matrices(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def not_bias(key):
    return key != "b"


WD_MASK = {"w": True, "stack": True, "b": False, "v": True, "s": True}

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
}


@pytest.mark.parametrize("name", OPTAX)
def test_matches_optax_trajectory(name, x64):
    make, make_optax = OPTAX[name]
    got, want = ref.trajectory(make(), STEPS), ref.trajectory(make_optax(), STEPS)
    assert max(np.abs(want[-1][k] - want[0][k]).max() for k in want[0]) > 1e-2, "the iterates must move"
    assert ref.max_relative_difference(got, want) <= 1e-10


@pytest.mark.parametrize("name", PAPER)
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
