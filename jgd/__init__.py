"""jgd: every classic deep-learning optimization method as a pure gradient transformation."""

from jgd import masks, schedules
from jgd.base import GradientTransformation, apply_updates, chain, named, with_extra_args
from jgd.blocks.averages import bias_correction, ema, scale_by_rms, trace
from jgd.blocks.clipping import clip_by_global_norm, clip_by_norm, clip_by_value
from jgd.blocks.regularization import l1_penalty, l2_penalty, max_norm, weight_decay
from jgd.blocks.scaling import scale, scale_by_learning_rate
from jgd.hyperparams_access import hyperparams, set_hyperparams
from jgd.lowbit import QuantizedArray, dequantize, quantized, stochastic
from jgd.methods.adafactor import adafactor
from jgd.methods.adam import adam, adamax, adamw, nadam
from jgd.methods.adaptive import adadelta, adagrad, rmsprop
from jgd.methods.adaptive_extra import adan, sm3, yogi
from jgd.methods.coin_betting import cocob
from jgd.methods.contrib_adaptive import acprop, madgrad
from jgd.methods.contrib_moments import ademamix, adopt, simplified_ademamix
from jgd.methods.d_adaptation import dadapt_adamw, prodigy
from jgd.methods.distance import dog, dowg
from jgd.methods.galore import GaloreState, galore
from jgd.methods.model_based import momo, momo_adam
from jgd.methods.moments import adabelief, lion, radam
from jgd.methods.muon import muon
from jgd.methods.muon_matrices import MuonDimensionNumbers, muon_adam_mask, muon_dimension_numbers
from jgd.methods.norm_scaled import fromage, novograd
from jgd.methods.schedule_free import schedule_free_adamw, schedule_free_eval_params, schedule_free_sgd
from jgd.methods.sgd import look_ahead, momentum, nesterov, sgd
from jgd.methods.sgd_variants import noisy_sgd, optimistic_gradient_descent, polyak_sgd
from jgd.methods.sign import rprop, signum
from jgd.methods.sophia import sophia
from jgd.methods.trust_ratio import lamb, lars
from jgd.modifiers.averaging import averaged_params, ema_params
from jgd.modifiers.cautious import CautiousState, cautious
from jgd.modifiers.graft import GraftState, graft
from jgd.modifiers.mars import MarsState, mars
from jgd.modifiers.mechanic import MechanicState, mechanize
from jgd.modifiers.sam import SamState, sam
from jgd.preconditioners.kron import kron
from jgd.preconditioners.shampoo import shampoo
from jgd.preconditioners.soap import soap
from jgd.preconditioners.transform import PreconditionerState
from jgd.second_order.linesearch import (
    LineSearch,
    LineSearchResult,
    backtracking_linesearch,
    unit_step,
    zoom_linesearch,
)
from jgd.second_order.minimize import MinimizeResult, minimize
from jgd.second_order.quasi_newton import QuasiNewtonState, bfgs, lbfgs, value_and_grad_from_state
from jgd.state import TransformState
from jgd.trees import global_norm
from jgd.wrappers.accumulate import AccumulateState, accumulate
from jgd.wrappers.finite import ApplyIfFiniteState, all_finite, apply_if_finite
from jgd.wrappers.monitor import MonitorState, monitor, statistics
from jgd.wrappers.offload import offload
from jgd.wrappers.partition import PartitionState, freeze, masked, partition
from jgd.wrappers.spikes import SkipSpikesState, skip_spikes
from jgd.wrappers.state_sharding import state_sharding

__version__ = "0.1.0"

__all__ = [
    "AccumulateState",
    "ApplyIfFiniteState",
    "CautiousState",
    "GaloreState",
    "GradientTransformation",
    "GraftState",
    "LineSearch",
    "LineSearchResult",
    "MarsState",
    "MechanicState",
    "MinimizeResult",
    "MonitorState",
    "MuonDimensionNumbers",
    "PartitionState",
    "PreconditionerState",
    "QuantizedArray",
    "QuasiNewtonState",
    "SamState",
    "SkipSpikesState",
    "TransformState",
    "accumulate",
    "acprop",
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "adan",
    "ademamix",
    "adopt",
    "all_finite",
    "apply_if_finite",
    "apply_updates",
    "averaged_params",
    "backtracking_linesearch",
    "bfgs",
    "bias_correction",
    "cautious",
    "chain",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "cocob",
    "dadapt_adamw",
    "dequantize",
    "dog",
    "dowg",
    "ema",
    "ema_params",
    "freeze",
    "fromage",
    "galore",
    "global_norm",
    "graft",
    "hyperparams",
    "kron",
    "l1_penalty",
    "l2_penalty",
    "lamb",
    "lars",
    "lbfgs",
    "lion",
    "look_ahead",
    "madgrad",
    "mars",
    "masked",
    "masks",
    "max_norm",
    "mechanize",
    "minimize",
    "momentum",
    "momo",
    "momo_adam",
    "monitor",
    "muon",
    "muon_adam_mask",
    "muon_dimension_numbers",
    "nadam",
    "named",
    "nesterov",
    "noisy_sgd",
    "novograd",
    "offload",
    "optimistic_gradient_descent",
    "partition",
    "polyak_sgd",
    "prodigy",
    "quantized",
    "radam",
    "rmsprop",
    "rprop",
    "sam",
    "scale",
    "scale_by_learning_rate",
    "scale_by_rms",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "schedules",
    "set_hyperparams",
    "sgd",
    "shampoo",
    "signum",
    "simplified_ademamix",
    "skip_spikes",
    "sm3",
    "soap",
    "sophia",
    "state_sharding",
    "statistics",
    "stochastic",
    "trace",
    "unit_step",
    "value_and_grad_from_state",
    "weight_decay",
    "with_extra_args",
    "yogi",
    "zoom_linesearch",
]
