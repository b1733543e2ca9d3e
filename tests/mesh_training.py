"""Trains with ``fit(..., mesh=...)`` on 8 host devices and checks it against one device.

Started by tests/experiment/test_training_mesh.py in a fresh process, since the device
count is fixed when JAX starts. Prints one line per check, ending in ``ok`` or
``FAILED``, and exits with the number of failures.
"""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import shutil
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jgd
from jgd.experiment.config.schema import CheckpointConfig, TrainingConfig
from jgd.experiment.train import checkpoint, sharding
from jgd.experiment.train.models import MLP, init_variables
from jgd.experiment.train.steps import RunState, make_train_step
from jgd.experiment.train.training import fit
from tests.resumable_run import data

MODEL = MLP((16,), 3, dropout=0.2, batch_norm=True)
VARIABLES = init_variables(MODEL, jax.random.key(0), 6)
failures = 0


def check(name: str, ok: bool, detail: str = "") -> None:
    global failures
    failures += not ok
    print(f"{name}: {detail} {'ok' if ok else 'FAILED'}", flush=True)


def transform():
    return jgd.chain(jgd.clip_by_global_norm(1.0), jgd.adam(0.01))


def train(epochs=3, mesh=None, checkpoint_dir=None, resume=False, shard=False):
    saving = None if checkpoint_dir is None else CheckpointConfig(dir=checkpoint_dir)
    options = TrainingConfig(epochs=epochs, batch_size=16, mesh=mesh, checkpoint=saving, shard_optimizer_state=shard)
    return fit(MODEL, VARIABLES, transform(), data(), jax.random.key(1), options, resume=resume)


def max_error(a, b) -> float:
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def specs(tree):
    return jax.tree.map(lambda a: a.sharding.spec, tree)


def metrics(history):
    return [[v for k, v in row.items() if k != "epoch"] for row in history.epochs]


def check_zero_1(unsharded):
    """shard_optimizer_state: the slots split over the data axis too; the same run, 1/8 of the slot bytes a device."""
    got, history = train(mesh={"data": 8}, shard=True)
    state_error, metrics_error = max_error(got, unsharded[0]), max_error(metrics(history), metrics(unsharded[1]))
    check("ZeRO-1 equals the replicated state", max(state_error, metrics_error) <= 1e-6, f"{state_error:.1e}")
    slots = jax.tree.leaves(got.opt_state[1].slots)
    split = [a for a in slots if not a.sharding.is_fully_replicated]
    whole = [a for a in slots if a.sharding.is_fully_replicated]
    device = jax.devices()[0]
    on_device = {id(a): sum(s.data.nbytes for s in a.addressable_shards if s.device == device) for a in slots}
    eighths = all(on_device[id(a)] * 8 == a.nbytes for a in split)
    # Only a slot with no dimension that 8 divides (the 3 output units' bias) stays whole.
    unsplittable = all(all(n % 8 for n in a.shape) for a in whole)
    check("ZeRO-1 slots split 8 ways", eighths and unsplittable, f"{len(whole)} whole")
    total, per_device = sum(a.nbytes for a in slots), sum(on_device.values())
    divisible = sum(a.nbytes for a in split)
    check("ZeRO-1 slot bytes", per_device * 8 == divisible + 8 * (total - divisible), f"{per_device} of {total}")


def check_restore_on_fewer_devices(straight):
    """A ZeRO-1 checkpoint of 8 devices restores, to the same bits, on 4 and on 1, and training goes on."""
    with tempfile.TemporaryDirectory() as directory:
        train(epochs=2, mesh={"data": 8}, checkpoint_dir=directory, shard=True)
        saved = checkpoint.load(directory)[1]["state"]
        for axes in ({"data": 4}, None):
            params = VARIABLES["params"]
            state = RunState(params, VARIABLES["batch_stats"], transform().init(params))
            placement = sharding.run_placement(axes, state)
            template = placement.place_state(state)
            restored = checkpoint.restore(directory, {"state": template}, placement.state)["state"]
            paths = jax.tree_util.tree_flatten_with_path(restored)[0]
            same = all(np.array_equal(saved[jax.tree_util.keystr(p)], a) for p, a in paths)
            placed = jax.tree.map(lambda a, t: a.sharding == t.sharding, restored, template)
            check(f"8 devices restored on {axes}", same and all(jax.tree.leaves(placed)), "bit for bit, in place")
            with tempfile.TemporaryDirectory() as copy:
                shutil.copytree(directory, copy, dirs_exist_ok=True)
                resumed, _ = train(epochs=3, mesh=axes, checkpoint_dir=copy, resume=True)
            error = max_error(resumed, straight)
            check(f"8 devices resumed on {axes} equals 8 devices straight", error <= 1e-6, f"{error:.1e}")


def main() -> int:
    assert jax.device_count() == 8
    want, want_history = train()
    split = {"BatchNorm_0": {"bias": P("model"), "scale": P("model")}, "Dense_0": {"kernel": P(None, "model")}}
    layouts = {
        "data-parallel": ({"data": 8}, {}),
        # The model axis splits the arrays whose last dimension it divides: 16 units, not the 3 outputs.
        "data and model": ({"data": 4, "model": 2}, split),
    }
    runs = {}
    for name, (axes, split_specs) in layouts.items():
        got, history = runs[name] = train(mesh=axes)
        state_error, metrics_error = max_error(got, want), max_error(metrics(history), metrics(want_history))
        check(f"{name} {axes} equals one device", max(state_error, metrics_error) <= 1e-6, f"{state_error:.1e}")
        expected = {layer: {k: split_specs.get(layer, {}).get(k, P()) for k in ps} for layer, ps in got.params.items()}
        slots = got.opt_state[1].slots
        placed = [specs(got.params), specs(slots["mu"]), specs(slots["nu"])]
        check(f"{name} params and slots placed alike", all(t == expected for t in placed), str(placed[0]))

    # A checkpoint of a sharded run resumes, on the same mesh, to the same bits as running straight through.
    axes, straight = layouts["data and model"][0], runs["data and model"][0]
    with tempfile.TemporaryDirectory() as directory:
        train(epochs=2, mesh=axes, checkpoint_dir=directory)
        resumed, _ = train(mesh=axes, checkpoint_dir=directory, resume=True)
    identical = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)))
    check(f"{axes} resume bit-identical", identical)

    check_zero_1(runs["data-parallel"])
    check_restore_on_fewer_devices(runs["data-parallel"][0])

    # The batch really is split: the compiled step sums the gradient over the data axis.
    mesh = sharding.make_mesh({"data": 8})
    tx = jgd.adam(0.01)
    state = RunState(VARIABLES["params"], VARIABLES["batch_stats"], tx.init(VARIABLES["params"]))
    state = sharding.place(state, sharding.state_shardings(state, mesh))
    batch = sharding.place((data().x_train[:16], data().y_train[:16]), sharding.replicated(mesh))
    for split in (True, False):
        step = make_train_step(MODEL, "cross_entropy", tx, sharding.batch_sharding(mesh) if split else None)
        text = jax.jit(step).lower(state, batch, None, jax.random.key(0)).compile().as_text()
        check(f"batch split={split}", ("all-reduce" in text) == split, "all-reduce in the step")
    return failures


if __name__ == "__main__":
    sys.exit(main())
