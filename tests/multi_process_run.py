"""One of two processes sharing a mesh of 2 × 4 CPU devices, as the hosts of a pod would
(tests/experiment/test_training_mesh.py).

``python tests/multi_process_run.py PROCESS_ID PORT DIR EPOCHS [--resume]``
joins the other process through ``jax.distributed.initialize`` and trains
tests/resumable_run.py's run on the mesh ``{"data": 4, "model": 2}`` with
checkpoints in DIR. It prints its process index and the last row of metrics
as JSON, and exits 130 when interrupted.
"""

import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import json
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.resumable_run import run


def main() -> int:
    process_id, port, directory, epochs = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 8, 4)
    try:
        _, history = run(directory, epochs, resume="--resume" in sys.argv, mesh={"data": 4, "model": 2})
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    print(json.dumps({"process": jax.process_index(), "last": history.epochs[-1]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
