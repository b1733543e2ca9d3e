"""A small training run holding every kind of state a resume must bring back, for tests/experiment/test_checkpoint.py.

``python tests/resumable_run.py DIR EPOCHS [--every N] [--resume]`` trains it
with checkpoints in DIR. Dropout and batch norm (keys and batch statistics),
a padded last batch, a learning-rate schedule (the step count), skipped
non-finite steps (their count) and early stopping (the best state) all take
part. Interrupted, it exits 130, as the command line does.
"""

import argparse
import sys

import jax
import numpy as np

import jgd
from jgd.experiment.config.schema import CheckpointConfig, EarlyStopping, TrainingConfig
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.models import MLP, init_variables
from jgd.experiment.train.training import fit


def data() -> Dataset:
    """Three classes decided by the signs of two of six features; 60 examples per split."""
    rng = np.random.default_rng(0)

    def split():
        x = rng.normal(size=(60, 6)).astype(np.float32)
        return x, ((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5)).astype(np.int32)

    return Dataset("toy", *split(), *split(), *split(), 3)


def run(directory, epochs, every=1, resume=False, hidden=(16,), learning_rate=0.01, seed=1, mesh=None):
    """Trains for ``epochs`` with checkpoints in ``directory``; returns fit's ``(state, history)``."""
    model = MLP(hidden, 3, dropout=0.2, batch_norm=True)
    variables = init_variables(model, jax.random.key(0), 6)
    tx = jgd.adam(jgd.schedules.cosine(learning_rate, 400))
    checkpoint = None if directory is None else CheckpointConfig(every=every, dir=str(directory))
    options = TrainingConfig(
        epochs=epochs,
        batch_size=16,
        early_stopping=EarlyStopping(patience=10**6),
        skip_nonfinite=True,
        mesh=mesh,
        checkpoint=checkpoint,
    )
    return fit(model, variables, tx, data(), jax.random.key(seed), options, resume=resume)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("epochs", type=int)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    try:
        run(args.directory, args.epochs, args.every, args.resume)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
