"""Runs a sweep with its settings sharded over 8 host devices, against one device.

Started by tests/experiment/test_sweep.py in a fresh process, since the device count is
fixed when JAX starts. Prints one line per case and exits non-zero on a mismatch.
"""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax
import numpy as np
from jax.sharding import Mesh

import jgd
from jgd.experiment.sweep.engine import sweep
from jgd.experiment.sweep.settings import grid
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.models import MLP


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    data = Dataset("toy", x[:80], y[:80], x[80:100], y[80:100], x[100:], y[100:], 3)
    model = MLP([16], 3, dropout=0.2)
    # 12 settings: not a multiple of 8, so the sharded chunks are padded.
    settings = grid(learning_rate=[1e-3, 1e-2, 3e-2], b1=[0.8, 0.9], seed=[0, 1])
    kwargs = {"epochs": 2, "order_key": jax.random.key(3), "batch_size": 16}
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("a", "b"))
    want = sweep(jgd.adam, settings, model, data, **kwargs)
    # Chunks of 5 round up to 8, one setting per device: two chunks, the second one padded.
    got = sweep(jgd.adam, settings, model, data, mesh=mesh, chunk=5, **kwargs)
    pairs = zip(
        jax.tree.leaves((got.params, got.curves, got.test)), jax.tree.leaves((want.params, want.curves, want.test))
    )
    equal = all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in pairs)
    print(f"{got.devices} devices, {got.chunks} chunks: {'equal' if equal else 'DIFFERENT'}", flush=True)
    failures = not (equal and got.devices == 8 and want.devices == 1 and got.chunks == 2)
    raise SystemExit(failures)


if __name__ == "__main__":
    main()
