"""jgd: every classic deep-learning optimization method as a pure gradient transformation."""

from jgd import masks, schedules
from jgd.accumulate import AccumulateState, accumulate
from jgd.adafactor import adafactor
from jgd.adam import adam, adamax, adamw, nadam
from jgd.adaptive import adadelta, adagrad, rmsprop
from jgd.averages import bias_correction, ema, scale_by_rms, trace
from jgd.base import GradientTransformation, apply_updates, chain, named, with_extra_args
from jgd.clipping import clip_by_global_norm, clip_by_norm, clip_by_value, global_norm
from jgd.finite import ApplyIfFiniteState, all_finite, apply_if_finite
from jgd.hyperparams import TransformState, hyperparams, set_hyperparams
from jgd.linesearch import LineSearch, LineSearchResult, backtracking_linesearch, unit_step, zoom_linesearch
from jgd.minimize import MinimizeResult, minimize
from jgd.moments import adabelief, lion, radam
from jgd.monitor import MonitorState, monitor, statistics
from jgd.muon import muon
from jgd.offload import offload
from jgd.partition import PartitionState, freeze, masked, partition
from jgd.quasi_newton import QuasiNewtonState, bfgs, lbfgs, value_and_grad_from_state
from jgd.regularization import l1_penalty, l2_penalty, max_norm, weight_decay
from jgd.scaling import scale, scale_by_learning_rate
from jgd.schedule_free import schedule_free_adamw, schedule_free_eval_params, schedule_free_sgd
from jgd.sgd import look_ahead, momentum, nesterov, sgd
from jgd.spikes import SkipSpikesState, skip_spikes
from jgd.state_sharding import state_sharding
from jgd.trust_ratio import lamb, lars

__version__ = "0.1.0"

__all__ = [
    "AccumulateState",
    "ApplyIfFiniteState",
    "GradientTransformation",
    "LineSearch",
    "LineSearchResult",
    "MinimizeResult",
    "MonitorState",
    "PartitionState",
    "QuasiNewtonState",
    "SkipSpikesState",
    "TransformState",
    "accumulate",
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
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
    "freeze",
    "global_norm",
    "hyperparams",
    "l1_penalty",
    "l2_penalty",
    "lamb",
    "lars",
    "lbfgs",
    "lion",
    "look_ahead",
    "masked",
    "masks",
    "max_norm",
    "minimize",
    "momentum",
    "monitor",
    "muon",
    "nadam",
    "named",
    "nesterov",
    "offload",
    "partition",
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
    "skip_spikes",
    "state_sharding",
    "statistics",
    "trace",
    "unit_step",
    "value_and_grad_from_state",
    "weight_decay",
    "with_extra_args",
    "zoom_linesearch",
]
