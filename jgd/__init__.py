"""jgd: every classic deep-learning optimization method as a pure gradient transformation."""

from jgd import schedules
from jgd.adafactor import adafactor
from jgd.adam import adam, adamax, nadam
from jgd.adaptive import adadelta, adagrad, rmsprop
from jgd.averages import bias_correction, ema, scale_by_rms, trace
from jgd.base import GradientTransformation, apply_updates, chain, with_extra_args
from jgd.clipping import clip_by_global_norm, clip_by_norm, clip_by_value, global_norm
from jgd.finite import ApplyIfFiniteState, all_finite, apply_if_finite
from jgd.hyperparams import TransformState, hyperparams, set_hyperparams
from jgd.linesearch import LineSearch, LineSearchResult, backtracking_linesearch, zoom_linesearch
from jgd.minimize import MinimizeResult, minimize
from jgd.moments import adabelief, lion, radam
from jgd.muon import muon
from jgd.quasi_newton import QuasiNewtonState, bfgs, lbfgs, value_and_grad_from_state
from jgd.regularization import l1_penalty, l2_penalty, max_norm, weight_decay
from jgd.scaling import scale, scale_by_learning_rate
from jgd.schedule_free import schedule_free_adamw, schedule_free_eval_params, schedule_free_sgd
from jgd.sgd import look_ahead, momentum, nesterov, sgd
from jgd.trust_ratio import lamb, lars

__version__ = "0.1.0"

__all__ = [
    "ApplyIfFiniteState",
    "GradientTransformation",
    "LineSearch",
    "LineSearchResult",
    "MinimizeResult",
    "QuasiNewtonState",
    "TransformState",
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "all_finite",
    "apply_if_finite",
    "apply_updates",
    "backtracking_linesearch",
    "bfgs",
    "bias_correction",
    "chain",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "ema",
    "global_norm",
    "hyperparams",
    "l1_penalty",
    "l2_penalty",
    "lamb",
    "lars",
    "lbfgs",
    "lion",
    "look_ahead",
    "max_norm",
    "minimize",
    "momentum",
    "muon",
    "nadam",
    "nesterov",
    "radam",
    "rmsprop",
    "scale",
    "scale_by_learning_rate",
    "scale_by_rms",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "schedules",
    "set_hyperparams",
    "sgd",
    "trace",
    "value_and_grad_from_state",
    "weight_decay",
    "with_extra_args",
    "zoom_linesearch",
]
