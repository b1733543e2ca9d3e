"""One of two processes (4 CPU devices each) that save and restore a sharded checkpoint
(tests/experiment/test_training_mesh.py).

``python tests/multi_process_checkpoint.py PROCESS_ID PORT DIR`` joins the
other process through ``jax.distributed.initialize``, saves twice (in the
background) an array split over all 8 devices, and restores the newest save
split another way. It prints, as JSON, whether every shard it holds equals the
saved values and how many of the array's bytes it held at each point.
"""

import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import json
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jgd.experiment.train import checkpoint, sharding

SHAPE = (48, 4)


def held(tree) -> int:
    return sum(s.data.nbytes for a in jax.tree.leaves(tree) for s in a.addressable_shards if s.replica_id == 0)


def matches(array, value) -> bool:
    return all(np.array_equal(np.asarray(s.data), value[s.index]) for s in array.addressable_shards)


def main() -> int:
    process_id, port, directory = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    assert (jax.process_count(), jax.device_count()) == (2, 8)
    value = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    rows = sharding.make_mesh({"data": 8})
    saver = checkpoint.Saver(directory)
    for epoch in (1, 2):  # the second save waits for the first
        split = {"w": NamedSharding(rows, P("data")), "step": sharding.replicated(rows)}
        saved = sharding.place({"w": value * epoch, "step": np.int32(epoch)}, split)
        saver.save({"state": saved}, {"epoch": epoch})
    saver.close()
    grid = sharding.make_mesh({"data": 4, "model": 2})
    target = {"w": NamedSharding(grid, P("model", "data")), "step": sharding.replicated(grid)}
    template = {"w": jax.ShapeDtypeStruct(SHAPE, np.float32), "step": jax.ShapeDtypeStruct((), np.int32)}
    restored = checkpoint.restore(directory, {"state": template}, target)["state"]
    result = {
        "process": jax.process_index(),
        "epoch": checkpoint.read_meta(directory)[0]["epoch"],
        "restored_equal": matches(restored["w"], value * 2) and matches(restored["step"], np.int32(2)),
        "placed": restored["w"].sharding == target["w"] and not restored["w"].is_fully_addressable,
        "bytes_saved_from_here": held(saved["w"]),
        "bytes_restored_here": held(restored["w"]),
        "bytes_total": value.nbytes,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
