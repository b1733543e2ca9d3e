"""The methods and schedules a config may name, and the reading of their YAML arguments.

``METHODS`` maps a config's ``optimizer.name`` to the jgd function that builds
the transform: adding a method to the runner is one line there. A name
``optax.NAME`` builds ``optax.NAME`` instead. A method's keyword arguments are
its hyperparameters in the config; a hyperparameter is a number, a flag, a word
option (``form: ema``) or a ``{schedule: NAME, ...}`` mapping of ``SCHEDULES``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jgd
from jgd.experiment.config.field_readers import choice, join, number

METHODS: dict[str, Callable[..., jgd.GradientTransformation]] = {
    "sgd": jgd.sgd,
    "momentum": jgd.momentum,
    "nesterov": jgd.nesterov,
    "adagrad": jgd.adagrad,
    "adadelta": jgd.adadelta,
    "rmsprop": jgd.rmsprop,
    "adam": jgd.adam,
    "adamax": jgd.adamax,
    "nadam": jgd.nadam,
    "lbfgs": jgd.lbfgs,
    "bfgs": jgd.bfgs,
    "adamw": jgd.adamw,
    "radam": jgd.radam,
    "adabelief": jgd.adabelief,
    "lion": jgd.lion,
    "lamb": jgd.lamb,
    "lars": jgd.lars,
    "adafactor": jgd.adafactor,
    "schedule_free_adamw": jgd.schedule_free_adamw,
    "schedule_free_sgd": jgd.schedule_free_sgd,
    "muon": jgd.muon,
    "adopt": jgd.adopt,
    "ademamix": jgd.ademamix,
    "simplified_ademamix": jgd.simplified_ademamix,
    "acprop": jgd.acprop,
    "madgrad": jgd.madgrad,
    "momo": jgd.momo,
    "momo_adam": jgd.momo_adam,
    "sophia": jgd.sophia,
    "prodigy": jgd.prodigy,
    "dadapt_adamw": jgd.dadapt_adamw,
    "dog": jgd.dog,
    "dowg": jgd.dowg,
    "cocob": jgd.cocob,
    "yogi": jgd.yogi,
    "adan": jgd.adan,
    "novograd": jgd.novograd,
    "signum": jgd.signum,
    "sm3": jgd.sm3,
    "fromage": jgd.fromage,
    "rprop": jgd.rprop,
    "noisy_sgd": jgd.noisy_sgd,
    "optimistic_gradient_descent": jgd.optimistic_gradient_descent,
    "polyak_sgd": jgd.polyak_sgd,
    "shampoo": jgd.shampoo,
    "soap": jgd.soap,
    "kron": jgd.kron,
}

SCHEDULES: dict[str, Callable[..., jgd.types.Schedule]] = {
    "constant": jgd.schedules.constant,
    "exponential": jgd.schedules.exponential,
    "step": jgd.schedules.step,
    "cosine": jgd.schedules.cosine,
    "linear_warmup": jgd.schedules.linear_warmup,
}

# Arguments a config cannot give: trees or functions of the params (masks), and tuples.
CODE_ONLY = (
    "mask",
    "weight_decay_mask",
    "trust_ratio_mask",
    "ns_coeffs",
    "muon_weight_dimension_numbers",
    "adam_mask",
    "clip_value_fn",
    "hessian_diagonal_fn",
    "betas",
    "init_step",
)

# Methods whose line search evaluates the plain loss: blocks that change the gradient would mislead it.
LINE_SEARCH = ("lbfgs", "bfgs", "optax.lbfgs")


def method_factory(name: Any, path: str) -> Callable[..., Any]:
    """The function that builds method ``name``; errors name the field ``path``."""
    if isinstance(name, str) and name.startswith("optax."):
        # optax loads only for a config that names one of its methods: reading the others needs jgd alone.
        import optax

        factory = getattr(optax, name.removeprefix("optax."), None)
        if not callable(factory):
            raise ValueError(f"{path} {name!r} is not an optax optimizer")
        return factory
    return METHODS[choice(name, path, tuple(METHODS))]


def check_arguments(fn: Callable, raw: Mapping[str, Any], path: str, what: str) -> None:
    """Checks that ``raw`` names only parameters of ``fn`` and gives all the required ones."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in CODE_ONLY]
    for key in raw:
        if key not in allowed:
            raise ValueError(
                f"{join(path, key)} is not a hyperparameter of {what}; expected one of: {', '.join(allowed)}"
            )
    for n, p in params.items():
        if p.default is inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in raw:
            raise ValueError(f"{join(path, n)} is required by {what}")


def _hyperparam(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        spec = dict(value)
        kind = choice(spec.pop("schedule", None), f"{path}.schedule", tuple(SCHEDULES))
        check_arguments(SCHEDULES[kind], spec, path, f"the {kind} schedule")
        return {
            "schedule": kind,
            **{k: v if isinstance(v, bool) else number(v, join(path, k)) for k, v in spec.items()},
        }
    if isinstance(value, bool):
        return value
    try:
        return number(value, path)
    except ValueError:
        if isinstance(value, str):
            return value  # a word option, such as momentum's form; the method checks it
        raise


def read_hyperparams(raw: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A method's YAML hyperparameters, each a number, flag, word or schedule spec (checked against its schedule)."""
    return {key: _hyperparam(value, join(path, key)) for key, value in raw.items()}


def hyperparam_value(value: Any) -> Any:
    """What the method receives for a config hyperparameter: a schedule spec becomes the schedule."""
    if isinstance(value, Mapping):
        spec = dict(value)
        return SCHEDULES[spec.pop("schedule")](**spec)
    return value
