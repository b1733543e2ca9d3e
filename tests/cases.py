"""One table of every public transform in jgd: how to build it, its other forms, and what it needs.

Each :class:`Case` builds one transform with fixed arguments: ``case.make(**overrides)`` replaces
any of them (``learning_rate=0.01``, ``state_dtype=jnp.bfloat16``) and ``case.at(value)`` sets its
main hyperparameter (``case.hyper``). Besides each public factory in its default form, the table
holds the seeds' other forms (``momentum(form="ema")``, ``nadam(form="seed")``) and the peer forms
(a parameter that reaches optax's, Keras's or torch's way of writing a method). A test that means
"every method" reads its rows here, selecting by the flags; tests/core/test_cases.py fails when a public
factory has no row.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import optax
import optax.contrib
import pytest

import jgd

METHOD, BLOCK, WRAPPER, SECOND_ORDER = "method", "block", "wrapper", "second_order"


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One row: a transform, its arguments, and what a test must know to run it.

    id: the pytest id: the factory's name for its default form, ``<factory>_<form>`` for another.
    factory: the public name in ``jgd.__all__`` the row covers.
    kwargs: the arguments of ``jgd.<factory>``, all by keyword, so that any can be overridden.
    build: instead of ``kwargs``, a function of keyword overrides (wrappers, chains).
    kind: METHOD, BLOCK, WRAPPER or SECOND_ORDER.
    slots: the slot names of its state (of the first jgd state inside it that has slots).
    real_slots: the slots that hold a square (|g|²): real where the params are complex.
    hyper: the float hyperparameter ``case.at(value)`` sets; None where there is none.
    seed: a method, form or block of the source documents (shared/seeds/).
    peer: the peer whose form the row reproduces ("optax", "keras", "torch"); None for jgd's own.
    complex: takes complex leaves; otherwise it refuses them with a ValueError naming ``factory``.
    needs_params: ``update`` needs ``params``.
    needs_value_fn: ``update`` needs ``value`` and ``value_fn`` (line searches).
    elementwise: each entry's step depends on that entry alone, so raveled params take the same steps.
    drifts: moves the params where the gradient is zero (weight decay; schedule-free's average, by rounding).
    state_dtype: ``make`` takes ``state_dtype`` (for a ``kwargs`` row: whether the factory does).
    optax: the same transform with the same values written with optax; None where optax has none.
    flax: one of the rows the Flax tests train with (TrainState, nnx.Optimizer).
    """

    id: str
    factory: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    build: Callable[..., jgd.GradientTransformation] | None = None
    kind: str = METHOD
    slots: tuple[str, ...] = ()
    real_slots: tuple[str, ...] = ()
    hyper: str | None = "learning_rate"
    seed: bool = False
    peer: str | None = None
    complex: bool = True
    needs_params: bool = False
    needs_value_fn: bool = False
    elementwise: bool = True
    drifts: bool = False
    state_dtype: bool | None = None
    optax: Callable[[], optax.GradientTransformation] | None = None
    flax: bool = False

    def __post_init__(self):
        if self.state_dtype is None:
            takes = self.build is None and "state_dtype" in inspect.signature(getattr(jgd, self.factory)).parameters
            object.__setattr__(self, "state_dtype", takes)

    def make(self, **overrides) -> jgd.GradientTransformation:
        if self.build is not None:
            return self.build(**overrides)
        return getattr(jgd, self.factory)(**{**self.kwargs, **overrides})

    def at(self, value, **overrides) -> jgd.GradientTransformation:
        """The transform with its main hyperparameter ``case.hyper`` set to ``value``."""
        return self.make(**{self.hyper: value}, **overrides)

    def __repr__(self) -> str:
        return f"Case({self.id})"


def per_leaf(optax_tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """An optax transform without state applied to each leaf on its own (per-tensor clipping)."""

    def update(updates, state, params=None):
        return jax.tree.map(lambda g: optax_tx.update(g, optax_tx.init(g))[0], updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


_SEEDS = [  # the methods and forms of the source documents
    Case("sgd", "sgd", dict(learning_rate=0.05), seed=True, optax=lambda: optax.sgd(0.05)),
    Case(
        "momentum",
        "momentum",
        dict(learning_rate=0.02, momentum=0.9),
        slots=("velocity",),
        seed=True,
        optax=lambda: optax.sgd(0.02, momentum=0.9),
    ),
    Case(
        "momentum_ema",
        "momentum",
        dict(learning_rate=0.1, momentum=0.8, form="ema"),
        slots=("velocity",),
        seed=True,
        optax=lambda: optax.sgd(0.1 * 0.2, momentum=0.8),
    ),
    Case(
        "nesterov",
        "nesterov",
        dict(learning_rate=0.05, momentum=0.9),
        slots=("velocity",),
        seed=True,
        optax=lambda: optax.sgd(0.05, 0.9, nesterov=True),
        flax=True,
    ),
    Case(
        "adagrad",
        "adagrad",
        dict(learning_rate=0.05),
        slots=("sum_of_squares",),
        real_slots=("sum_of_squares",),
        seed=True,
    ),
    Case(
        "adadelta",
        "adadelta",
        dict(learning_rate=1.0),
        slots=("mean_square_grad", "mean_square_step"),
        seed=True,
        complex=False,
    ),
    Case(
        "rmsprop",
        "rmsprop",
        dict(learning_rate=0.01),
        slots=("mean_square",),
        real_slots=("mean_square",),
        seed=True,
        optax=lambda: optax.rmsprop(0.01, eps_in_sqrt=False),
    ),
    Case(
        "rmsprop_centered_momentum",
        "rmsprop",
        dict(learning_rate=0.01, centered=True, momentum=0.5),
        slots=("mean_square", "mean", "velocity"),
        real_slots=("mean_square",),
        seed=True,
    ),
    Case(
        "rmsprop_centered_nesterov",
        "rmsprop",
        # ε large enough that float32 does not amplify the cancellation in E[g²] - E[g]².
        dict(learning_rate=0.01, eps=1e-2, centered=True, momentum=0.8, nesterov=True),
        slots=("mean_square", "mean", "velocity"),
        real_slots=("mean_square",),
        seed=True,
        optax=lambda: optax.rmsprop(0.01, eps=1e-2, centered=True, momentum=0.8, nesterov=True, eps_in_sqrt=False),
    ),
    Case(
        "adam",
        "adam",
        dict(learning_rate=0.01),
        slots=("mu", "nu"),
        real_slots=("nu",),
        seed=True,
        optax=lambda: optax.adam(0.01),
        flax=True,
    ),
    Case("adamax", "adamax", dict(learning_rate=0.01), slots=("mu", "inf_norm"), real_slots=("inf_norm",), seed=True),
    Case("nadam", "nadam", dict(learning_rate=0.01), slots=("mu", "nu"), real_slots=("nu",), seed=True),
    Case(
        "nadam_seed", "nadam", dict(learning_rate=0.01, form="seed"), slots=("mu", "nu"), real_slots=("nu",), seed=True
    ),
    Case(
        "chain",  # gradient clipping (seed 003) before the step
        "chain",
        build=lambda learning_rate=0.01: jgd.chain(jgd.clip_by_global_norm(1.0), jgd.rmsprop(learning_rate)),
        slots=("mean_square",),
        real_slots=("mean_square",),
        seed=True,
        elementwise=False,
        optax=lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.rmsprop(0.01, eps_in_sqrt=False)),
        flax=True,
    ),
]

_PEER_FORMS = [  # a parameter that reaches a peer's form of a method
    Case(
        "sgd_momentum",
        "sgd",
        dict(learning_rate=0.02, momentum=0.9),
        slots=("velocity",),
        peer="optax",
        optax=lambda: optax.sgd(0.02, momentum=0.9),
    ),
    Case(
        "sgd_nesterov",
        "sgd",
        dict(learning_rate=0.02, momentum=0.9, nesterov=True),
        slots=("velocity",),
        peer="optax",
        optax=lambda: optax.sgd(0.02, 0.9, nesterov=True),
    ),
    Case(
        "momentum_trace",
        "momentum",
        dict(learning_rate=0.02, momentum=0.9, form="trace"),
        slots=("velocity",),
        peer="optax",
        optax=lambda: optax.sgd(0.02, momentum=0.9),
    ),
    Case(
        "momentum_dampening",
        "momentum",
        dict(learning_rate=0.02, momentum=0.9, form="trace", dampening=0.1),
        slots=("velocity",),
        peer="torch",
    ),
    Case(
        "nesterov_trace",
        "nesterov",
        dict(learning_rate=0.02, momentum=0.9, form="trace"),
        slots=("velocity",),
        peer="optax",
        optax=lambda: optax.sgd(0.02, 0.9, nesterov=True),
    ),
    Case(
        "adagrad_optax",
        "adagrad",
        dict(learning_rate=0.1, eps=0.0, eps_root=1e-7, initial_accumulator=0.1),
        slots=("sum_of_squares",),
        real_slots=("sum_of_squares",),
        peer="optax",
        optax=lambda: optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7),
    ),
    Case(
        "rmsprop_eps_root",
        "rmsprop",
        dict(learning_rate=0.01, eps=0.0, eps_root=1e-8),
        slots=("mean_square",),
        real_slots=("mean_square",),
        peer="optax",
        optax=lambda: optax.rmsprop(0.01),
    ),
    Case(
        "rmsprop_trace_momentum",
        "rmsprop",
        dict(learning_rate=0.01, momentum=0.5, momentum_form="trace"),
        slots=("mean_square", "velocity"),
        real_slots=("mean_square",),
        peer="torch",
    ),
    Case(
        "adam_eps_root",
        "adam",
        dict(learning_rate=0.05, eps_root=1e-6),
        slots=("mu", "nu"),
        real_slots=("nu",),
        peer="optax",
        optax=lambda: optax.adam(0.05, eps_root=1e-6),
    ),
    Case(
        "adam_amsgrad",
        "adam",
        dict(learning_rate=0.05, amsgrad="nu_hat"),
        slots=("mu", "nu", "nu_max"),
        real_slots=("nu", "nu_max"),
        peer="optax",
        optax=lambda: optax.amsgrad(0.05),
    ),
    Case(
        "adam_amsgrad_eps_hat",
        "adam",
        dict(learning_rate=0.05, amsgrad=True, eps_hat=True),
        slots=("mu", "nu", "nu_max"),
        real_slots=("nu", "nu_max"),
        peer="keras",
    ),
    Case(
        "adamax_eps_in_max",
        "adamax",
        dict(learning_rate=0.05, eps_in_max=True),
        slots=("mu", "inf_norm"),
        real_slots=("inf_norm",),
        peer="optax",
        optax=lambda: optax.adamax(0.05),
    ),
    Case(
        "nadam_optax",
        "nadam",
        dict(learning_rate=0.05, momentum_decay=None),
        slots=("mu", "nu"),
        real_slots=("nu",),
        peer="optax",
        optax=lambda: optax.nadam(0.05),
    ),
    Case(
        "nadam_b1", "nadam", dict(learning_rate=0.05, form="b1"), slots=("mu", "nu"), real_slots=("nu",), peer="keras"
    ),
]

_LARGE_RUNS = [  # the methods large runs use, beyond the source documents
    Case(
        "adamw",
        "adamw",
        dict(learning_rate=0.05, weight_decay=0.1),
        slots=("mu", "nu"),
        real_slots=("nu",),
        needs_params=True,
        optax=lambda: optax.adamw(0.05, weight_decay=0.1),
        drifts=True,
    ),
    Case(
        "radam",
        "radam",
        dict(learning_rate=0.01),
        slots=("mu", "nu"),
        real_slots=("nu",),
        optax=lambda: optax.radam(0.01),
    ),
    Case(
        "adabelief",
        "adabelief",
        dict(learning_rate=0.01),
        slots=("mu", "nu"),
        real_slots=("nu",),
        optax=lambda: optax.adabelief(0.01),
    ),
    Case(
        "lion",
        "lion",
        dict(learning_rate=1e-3, weight_decay=0.1),
        slots=("mu",),
        complex=False,
        needs_params=True,
        drifts=True,
    ),
    Case(
        "lamb",
        "lamb",
        dict(learning_rate=0.01, weight_decay=0.01),
        slots=("mu", "nu"),
        real_slots=("nu",),
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.lamb(0.01, weight_decay=0.01),
        drifts=True,
    ),
    Case(
        "lars",
        "lars",
        dict(learning_rate=0.5, weight_decay=1e-4, trust_coefficient=0.02),
        slots=("velocity",),
        needs_params=True,
        elementwise=False,
        drifts=True,
    ),
    Case(
        "lars_optax",
        "lars",
        dict(learning_rate=0.05, weight_decay=0.01, form="optax"),
        slots=("velocity",),
        peer="optax",
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.lars(0.05, weight_decay=0.01),
        drifts=True,
    ),
    Case(
        "adafactor",
        "adafactor",
        dict(learning_rate=0.01, min_dim_size_to_factor=2, momentum=0.9),
        slots=("v_row", "v_col", "v", "mu"),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(
        "schedule_free_adamw",
        "schedule_free_adamw",
        dict(learning_rate=0.01),
        slots=("z", "nu"),
        real_slots=("nu",),
        complex=False,
        needs_params=True,
        drifts=True,
    ),
    Case(
        "schedule_free_sgd",
        "schedule_free_sgd",
        dict(learning_rate=0.1),
        slots=("z",),
        complex=False,
        needs_params=True,
        drifts=True,
    ),
    Case(
        "muon",
        "muon",
        dict(learning_rate=0.01, stacked_matrices=True),
        slots=("mu", "nu"),
        real_slots=("nu",),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(  # NorMuon's second moment per neuron (a slot not shaped like its param), Polar Express, conv kernels
        "muon_normuon",
        "muon",
        dict(learning_rate=0.01, normuon=True, ns_coeffs="polar_express", flatten_conv=True),
        slots=("mu", "nu"),
        real_slots=("nu",),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(
        "shampoo",
        "shampoo",
        # No rank-deficient factors: tests/sharded_steps.py's 16 × 32 and 32 × 4 matrices would give 32 × 32 factors
        # of rank 16 and 4, and its vectors rank-1 factors; their null spaces, damped by matrix_eps alone, scale the
        # rounding of a sharded sum by matrix_eps^(-1/2) (1e-4 relative steps in float32).
        dict(learning_rate=0.01, max_precond_dim=16, precondition_1d=False),
        slots=("mu",),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(
        "shampoo_graft",
        "shampoo",
        dict(
            learning_rate=0.01,
            b2=0.99,
            momentum=0.5,
            graft="adam",
            block_size=2,
            precondition_every=2,
            start_preconditioning_step=2,
        ),
        slots=("mu", "nu"),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(
        "soap",
        "soap",
        # ε above float32's rounding of a rotated gradient: the tests repeat one gradient, whose rotated form is
        # diagonal up to rounding, and ε = 1e-8 would divide that rounding by itself (O(1) steps from noise).
        # and, as for shampoo, no rank-deficient or nearly deficient factors (SOAP's basis of a null space is any basis,
        # and near one it turns the rounding of a sharded sum into 5e-6 steps): tests/sharded_steps.py's w1 gradient
        # is close to rank 4, so only its 4-long axes get a factor.
        dict(learning_rate=0.01, eps=1e-3, max_precond_dim=4),
        slots=("mu", "nu"),
        complex=False,
        needs_params=True,
        elementwise=False,
        drifts=True,
    ),
    Case(
        "soap_blocks",
        "soap",
        dict(
            learning_rate=0.01, eps=1e-3, weight_decay=0.0, block_size=2, precondition_frequency=2, precondition_1d=True
        ),
        slots=("mu", "nu"),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(
        "kron",
        "kron",
        dict(learning_rate=0.01, weight_decay=0.01),
        slots=("mu",),  # the factors are the state's factors, not slots: float32 whatever the params' dtype
        complex=False,
        needs_params=True,
        elementwise=False,
        drifts=True,
    ),
]


def with_loss(tx: jgd.GradientTransformation, value: float) -> jgd.GradientTransformation:
    """``tx`` given the loss ``value`` at every update that passes none (``polyak_sgd``'s ``value=``)."""

    def update(updates, state, params=None, **extra_args):
        return tx.update(updates, state, params, **{"value": value, **extra_args})

    return jgd.GradientTransformation(tx.init, update)


_OPTAX_CORE = [  # optax's other optimizers, under their optax names
    Case(
        "yogi",
        "yogi",
        dict(learning_rate=0.01),
        slots=("mu", "nu"),
        real_slots=("nu",),
        optax=lambda: optax.yogi(0.01),
        drifts=True,
    ),
    Case(
        "adan",
        "adan",
        dict(learning_rate=0.01, weight_decay=0.01),
        slots=("mu", "delta", "nu", "previous_grad"),
        real_slots=("nu",),
        needs_params=True,
        drifts=True,
    ),
    Case(
        "adan_optax",
        "adan",
        dict(learning_rate=0.01, weight_decay=0.01, form="optax"),
        slots=("mu", "delta", "nu", "previous_grad"),
        real_slots=("nu",),
        peer="optax",
        needs_params=True,
        optax=lambda: optax.adan(0.01, weight_decay=0.01),
    ),
    Case(
        "sm3",
        "sm3",
        dict(learning_rate=0.05),
        slots=("accumulators", "mu"),
        complex=False,
        elementwise=False,
    ),
    Case("signum", "signum", dict(learning_rate=1e-3), slots=("mu",), complex=False, optax=lambda: optax.signum(1e-3)),
    Case("rprop", "rprop", dict(learning_rate=0.01), slots=("step_size", "previous_grad"), complex=False),
    Case(
        "rprop_optax",
        "rprop",
        dict(learning_rate=0.01, form="optax"),
        slots=("step_size", "previous_grad"),
        peer="optax",
        complex=False,
        optax=lambda: optax.rprop(0.01),
    ),
    Case(
        "novograd",
        "novograd",
        dict(learning_rate=0.01, b1=0.9, b2=0.25, eps=1e-6, weight_decay=0.01),
        slots=("mu", "nu"),
        real_slots=("nu",),
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.novograd(0.01, weight_decay=0.01),
        drifts=True,
    ),
    Case(
        "fromage",
        "fromage",
        dict(learning_rate=0.01),
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.fromage(0.01),
        drifts=True,
    ),
    Case(
        "optimistic_gradient_descent",
        "optimistic_gradient_descent",
        dict(learning_rate=0.05, alpha=0.7, beta=0.4),
        slots=("previous_grad",),
        optax=lambda: optax.optimistic_gradient_descent(0.05, 0.7, 0.4),
    ),
    Case(
        "polyak_sgd",
        "polyak_sgd",
        # A fixed loss above f_min: the step is γ_max wherever the gradient is not tiny.
        build=lambda max_learning_rate=0.05: with_loss(jgd.polyak_sgd(max_learning_rate, f_min=-1.0), 0.5),
        hyper="max_learning_rate",
        elementwise=False,
        optax=lambda: with_loss(optax.polyak_sgd(0.05, f_min=-1.0), 0.5),
    ),
    Case(
        "noisy_sgd",
        "noisy_sgd",
        dict(learning_rate=0.01, eta=0.01, key=0),
        elementwise=False,  # a key per leaf: raveled params draw other noise
        optax=lambda: optax.noisy_sgd(0.01, 0.01, key=0),
        drifts=True,
    ),
]


def with_objective(tx: jgd.GradientTransformation) -> jgd.GradientTransformation:
    """``tx`` given ``obj_fn``, the loss ``½ ‖θ‖²`` as a function of the params, at every update (``sophia``'s)."""

    def objective(params):
        return sum(0.5 * jnp.sum(x * x) for x in jax.tree.leaves(params))

    def update(updates, state, params=None, **extra_args):
        return tx.update(updates, state, params, **{"obj_fn": objective, **extra_args})

    return jgd.GradientTransformation(tx.init, update)


_OPTAX_CONTRIB_B = [  # optax.contrib's learning-rate-free methods and wrappers, under their optax names
    Case(
        "prodigy",
        "prodigy",
        dict(learning_rate=1.0),
        slots=("mu", "nu", "grad_sum", "initial_params"),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(
        "prodigy_optax",
        "prodigy",
        dict(learning_rate=1.0, form="optax"),
        slots=("mu", "nu", "grad_sum", "initial_params"),
        peer="optax",
        complex=False,
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.contrib.prodigy(1.0),
    ),
    Case(
        "dadapt_adamw",
        "dadapt_adamw",
        # γ = 0.1: at γ = 1 the uncorrected form's first steps are large and float32 runs part ways (3e-6).
        dict(learning_rate=0.1),
        slots=("mu", "nu", "grad_sum"),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(
        "dadapt_adamw_optax",
        "dadapt_adamw",
        dict(learning_rate=1.0, form="optax"),
        slots=("mu", "nu", "grad_sum"),
        peer="optax",
        complex=False,
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.contrib.dadapt_adamw(1.0),
    ),
    Case(
        "dog",
        "dog",
        dict(learning_rate=1.0),
        slots=("initial_params",),
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.contrib.dog(1.0),
    ),
    Case(
        "dowg",
        "dowg",
        dict(learning_rate=1.0),
        slots=("initial_params",),
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.contrib.dowg(1.0),
    ),
    Case(
        "cocob",
        "cocob",
        dict(learning_rate=1.0),
        slots=("initial_params", "cumulative_gradients", "scale", "subgradients", "reward"),
        complex=False,
        needs_params=True,
        optax=lambda: optax.contrib.cocob(1.0),
    ),
    Case(
        "galore",
        "galore",
        dict(learning_rate=0.01, rank=2, update_proj_gap=2),
        slots=("projector",),
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case(
        "galore_optax",
        "galore",
        dict(learning_rate=0.01, rank=2, update_proj_gap=2, form="optax"),
        slots=("projector",),
        peer="optax",
        complex=False,
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.contrib.galore(0.01, rank=2, update_proj_gap=2),
    ),
    Case(
        "mechanize",
        "mechanize",
        build=lambda learning_rate=1.0: jgd.mechanize(jgd.adam(learning_rate)),
        kind=WRAPPER,
        slots=("initial_params",),  # its own state comes before the base method's
        needs_params=True,
        elementwise=False,
        # No optax twin here: optax's mechanize refuses complex params (tests/methods/test_optax_contrib_b.py
        # compares the two on real ones).
    ),
    Case(
        "sam",
        "sam",
        build=lambda learning_rate=0.05: jgd.sam(jgd.adam(learning_rate), jgd.sgd(0.05)),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
        needs_params=True,
        elementwise=False,
        optax=lambda: optax.contrib.sam(optax.adam(0.05), optax.sgd(0.05)),
    ),
]

_OPTAX_CONTRIB_A = [  # optax.contrib's ADOPT, AdEMAMix, ACProp, MADGRAD, MoMo and Sophia, under their optax names
    Case(
        "adopt",
        "adopt",
        dict(learning_rate=0.01),
        slots=("mu", "nu"),
        complex=False,
        optax=lambda: optax.contrib.adopt(0.01),
    ),
    Case(
        "ademamix",
        "ademamix",
        dict(learning_rate=0.01, weight_decay=0.01),
        slots=("m1", "m2", "nu"),
        real_slots=("nu",),
        needs_params=True,
        optax=lambda: optax.contrib.ademamix(0.01, weight_decay=0.01),
        drifts=True,
    ),
    Case(  # optax squares a complex gradient without its conjugate: compared on real params in test_optax_contrib_a
        "simplified_ademamix",
        "simplified_ademamix",
        # The momentum sums 1 / (1 - b1) gradients: b1 = 0.8 keeps the generic tests' rates (0.05) from steps
        # so long that float32 rounding, which differs between a tree and its raveled vector, grows past 1e-6.
        dict(learning_rate=0.002, b1=0.8, weight_decay=0.01),
        slots=("mu", "nu"),
        real_slots=("nu",),
        needs_params=True,
        drifts=True,
    ),
    # ε well above float32 rounding: the tests repeat gradients, so g − m and s vanish, and a small ε divides the
    # rounding of a sharded sum by √s (8e-6 relative steps with ε = 1e-6).
    Case(
        "acprop",
        "acprop",
        dict(learning_rate=0.01, eps=1e-3),
        slots=("mu", "nu"),
        real_slots=("nu",),
        needs_params=True,
    ),
    Case(
        "acprop_optax",
        "acprop",
        dict(learning_rate=0.01, eps=1e-3, form="optax"),
        slots=("mu", "nu"),
        real_slots=("nu",),
        peer="optax",
        needs_params=True,
        optax=lambda: optax.contrib.acprop(0.01, eps=1e-3),
    ),
    Case(
        "madgrad",
        "madgrad",
        dict(learning_rate=0.01),
        slots=("grad_sum_sq", "s", "x0"),
        real_slots=("grad_sum_sq",),
        needs_params=True,
    ),
    Case(  # optax squares a complex gradient without its conjugate: compared on real params in test_optax_contrib_a
        "madgrad_optax",
        "madgrad",
        dict(learning_rate=0.01, weight_decay=0.01, form="optax"),
        slots=("grad_sum_sq", "s", "x0"),
        real_slots=("grad_sum_sq",),
        peer="optax",
        needs_params=True,
    ),
    Case(
        "momo",
        "momo",
        # A fixed loss above the lower bound: the step size is the Polyak step or the cap.
        build=lambda learning_rate=0.5, state_dtype=None: with_loss(
            jgd.momo(learning_rate, state_dtype=state_dtype), 0.5
        ),
        slots=("exp_avg",),
        complex=False,
        needs_params=True,
        elementwise=False,
        state_dtype=True,
        optax=lambda: with_loss(optax.contrib.momo(0.5), 0.5),
    ),
    Case(
        "momo_optax",
        "momo",
        build=lambda learning_rate=0.5: with_loss(jgd.momo(learning_rate, weight_decay=0.01, form="optax"), 0.5),
        slots=("exp_avg",),
        peer="optax",
        complex=False,
        needs_params=True,
        elementwise=False,
        optax=lambda: with_loss(optax.contrib.momo(0.5, weight_decay=0.01), 0.5),
        drifts=True,
    ),
    Case(
        "momo_adam",
        "momo_adam",
        build=lambda learning_rate=0.01, state_dtype=None: with_loss(
            jgd.momo_adam(learning_rate, state_dtype=state_dtype), 0.5
        ),
        slots=("exp_avg", "exp_avg_sq"),
        complex=False,
        needs_params=True,
        elementwise=False,
        state_dtype=True,
        optax=lambda: with_loss(optax.contrib.momo_adam(0.01), 0.5),
    ),
    Case(
        "momo_adam_optax",
        "momo_adam",
        build=lambda learning_rate=0.01: with_loss(jgd.momo_adam(learning_rate, weight_decay=0.01, form="optax"), 0.5),
        slots=("exp_avg", "exp_avg_sq"),
        peer="optax",
        complex=False,
        needs_params=True,
        elementwise=False,
        optax=lambda: with_loss(optax.contrib.momo_adam(0.01, weight_decay=0.01), 0.5),
        drifts=True,
    ),
    Case(
        "sophia",
        "sophia",
        build=lambda learning_rate=0.01, state_dtype=None: with_objective(
            jgd.sophia(learning_rate, weight_decay=0.0, state_dtype=state_dtype)
        ),
        slots=("mu", "nu"),
        complex=False,
        needs_params=True,
        elementwise=False,  # a key per leaf: raveled params draw other signs
        state_dtype=True,
    ),
    Case(
        "sophia_optax",
        "sophia",
        build=lambda learning_rate=0.01: with_objective(jgd.sophia(learning_rate, form="optax")),
        slots=("mu", "nu"),
        peer="optax",
        complex=False,
        needs_params=True,
        elementwise=False,
        optax=lambda: with_objective(optax.contrib.sophia(0.01)),
        drifts=True,
    ),
]

_BLOCKS = [
    Case("scale", "scale", dict(factor=0.5), kind=BLOCK, hyper="factor"),
    Case("scale_by_learning_rate", "scale_by_learning_rate", dict(learning_rate=0.1), kind=BLOCK),
    Case("trace", "trace", dict(decay=0.9), kind=BLOCK, slots=("velocity",), hyper="decay"),
    Case("ema", "ema", dict(decay=0.9), kind=BLOCK, slots=("average",), hyper="decay"),
    Case("bias_correction", "bias_correction", dict(decay=0.9), kind=BLOCK, hyper="decay"),
    Case(
        "scale_by_rms",
        "scale_by_rms",
        build=lambda decay=0.9, state_dtype=None: jgd.scale_by_rms(
            decay, numerator=jgd.chain(jgd.ema(0.9), jgd.bias_correction(0.9)), state_dtype=state_dtype
        ),
        kind=BLOCK,
        slots=("second_moment",),
        hyper="decay",
        complex=False,
        state_dtype=True,
    ),
    Case("clip_by_value", "clip_by_value", dict(max_value=1.0), kind=BLOCK, hyper="max_value", complex=False),
    Case(
        "clip_by_norm",
        "clip_by_norm",
        dict(max_norm=2.0),
        kind=BLOCK,
        hyper="max_norm",
        elementwise=False,
        optax=lambda: per_leaf(optax.clip_by_global_norm(2.0)),
    ),
    Case(
        "clip_by_global_norm",
        "clip_by_global_norm",
        dict(max_norm=2.0),
        kind=BLOCK,
        hyper="max_norm",
        seed=True,
        elementwise=False,
        optax=lambda: optax.clip_by_global_norm(2.0),
    ),
    Case("l1_penalty", "l1_penalty", dict(rate=1e-3), kind=BLOCK, hyper="rate", complex=False, needs_params=True),
    Case("l2_penalty", "l2_penalty", dict(rate=1e-3), kind=BLOCK, hyper="rate", needs_params=True),
    Case("weight_decay", "weight_decay", dict(rate=1e-3), kind=BLOCK, hyper="rate", needs_params=True),
    Case(
        "max_norm",
        "max_norm",
        dict(max_value=2.0),
        kind=BLOCK,
        hyper="max_value",
        complex=False,
        needs_params=True,
        elementwise=False,
    ),
    Case("freeze", "freeze", kind=BLOCK, hyper=None),
    Case(
        "chain_optax",
        "chain",
        # The decay scaled by the rate, as decoupled decay is: a zero rate moves nothing.
        build=lambda learning_rate=0.002: jgd.chain(
            optax.clip(1.0), jgd.nadam(learning_rate), jgd.weight_decay(0.5 * learning_rate)
        ),
        kind=BLOCK,
        slots=("mu", "nu"),
        real_slots=("nu",),
        needs_params=True,
        drifts=True,
    ),
    Case(
        "named",
        "named",
        build=lambda learning_rate=0.01: jgd.named("encoder", jgd.adam(learning_rate)),
        kind=BLOCK,
        slots=("mu", "nu"),
        real_slots=("nu",),
    ),
    Case(
        "masked",
        "masked",
        build=lambda rate=1e-3: jgd.masked(jgd.weight_decay(rate), jgd.masks.decayed),
        kind=BLOCK,
        hyper="rate",
        needs_params=True,
    ),
    Case(
        "with_extra_args",
        "with_extra_args",
        build=lambda learning_rate=0.05: jgd.with_extra_args(jgd.sgd(learning_rate)),
        kind=BLOCK,
    ),
]

_WRAPPERS = [
    Case(
        "accumulate",
        "accumulate",
        complex=False,
        build=lambda learning_rate=0.01: jgd.accumulate(jgd.adam(learning_rate), every=2),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
    ),
    Case(
        "apply_if_finite",
        "apply_if_finite",
        build=lambda learning_rate=0.01, state_dtype=None: jgd.apply_if_finite(
            jgd.nadam(learning_rate, state_dtype=state_dtype)
        ),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
        state_dtype=True,
    ),
    Case(
        "monitor",
        "monitor",
        complex=False,
        build=lambda learning_rate=0.01: jgd.monitor(jgd.skip_spikes(jgd.adam(learning_rate), window=4)),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
    ),
    Case(
        "skip_spikes",
        "skip_spikes",
        build=lambda learning_rate=0.01: jgd.skip_spikes(jgd.adam(learning_rate), window=4),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
    ),
    Case(
        "partition",
        "partition",
        build=lambda learning_rate=0.05: jgd.partition(
            {"w1": ("w1", jgd.adam(learning_rate)), "b": ("b.*", 0.5), "w2": ("w2", jgd.freeze())},
            default=jgd.momentum(learning_rate),
        ),
        kind=WRAPPER,
        slots=("velocity",),  # the default group's momentum comes first
        elementwise=False,
    ),
    Case(
        "offload",
        "offload",
        build=lambda learning_rate=0.01: jgd.offload(jgd.adam(learning_rate), slots=("mu",)),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
    ),
]

_MODIFIERS = [  # transforms that change what any method does
    Case(
        "cautious",
        "cautious",
        build=lambda learning_rate=0.01: jgd.cautious(jgd.adam(learning_rate)),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
        elementwise=False,
    ),
    Case(
        "mars",
        "mars",
        build=lambda learning_rate=0.01, state_dtype=None: jgd.mars(
            jgd.adamw(learning_rate, b1=0.95, b2=0.99), state_dtype=state_dtype
        ),
        kind=WRAPPER,
        slots=("previous_grad",),  # its own state comes before the inner method's
        needs_params=True,
        elementwise=False,
        state_dtype=True,
    ),
    Case(
        "ema_params",
        "ema_params",
        build=lambda learning_rate=0.01: jgd.chain(jgd.adam(learning_rate), jgd.ema_params(0.9)),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
        needs_params=True,
    ),
    Case(
        "graft",
        "graft",
        build=lambda learning_rate=0.01: jgd.graft(jgd.adam(learning_rate), jgd.sgd(learning_rate)),
        kind=WRAPPER,
        slots=("mu", "nu"),
        real_slots=("nu",),
        elementwise=False,
    ),
]

_SECOND_ORDER = [
    Case("bfgs", "bfgs", kind=SECOND_ORDER, hyper=None, complex=False, needs_value_fn=True, elementwise=False),
    Case("lbfgs", "lbfgs", kind=SECOND_ORDER, hyper=None, complex=False, needs_value_fn=True, elementwise=False),
    Case(
        "lbfgs_memory_3",
        "lbfgs",
        dict(memory_size=3, learning_rate=1.0),
        kind=SECOND_ORDER,
        complex=False,
        needs_value_fn=True,
        elementwise=False,
    ),
]

CASES: dict[str, Case] = {
    c.id: c
    for c in _SEEDS
    + _PEER_FORMS
    + _LARGE_RUNS
    + _OPTAX_CORE
    + _OPTAX_CONTRIB_B
    + _BLOCKS
    + _WRAPPERS
    + _MODIFIERS
    + _SECOND_ORDER
}
CASES.update({c.id: c for c in _OPTAX_CONTRIB_A})

# Public names that return a GradientTransformation but are not transforms of gradients a test can run alone.
NOT_TRANSFORMS: dict[str, str] = {}


def transform_states(tree) -> list[jgd.TransformState]:
    """Every jgd state inside ``tree`` (a chain's tuple, a wrapper's NamedTuple, ...), in order."""
    is_state = lambda x: isinstance(x, jgd.TransformState)  # noqa: E731
    return [node for node in jax.tree.leaves(tree, is_leaf=is_state) if is_state(node)]


def as_params(cases: Iterable[Case], slow: Callable[[Case], bool] = lambda case: False) -> list:
    """``pytest.param``s of ``cases`` with their ids, the ones ``slow`` picks marked slow."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if slow(c) else []) for c in cases]


def select(**flags) -> list[Case]:
    """The rows whose fields equal ``flags`` (``select(kind=METHOD, peer=None)``)."""
    return [c for c in CASES.values() if all(getattr(c, k) == v for k, v in flags.items())]
