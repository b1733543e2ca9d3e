#!/usr/bin/env bash
# Every GPU measurement in one command (under 8 minutes on one H100), its tables written to a folder:
#
#   env.txt          the device, jax and optax versions, nvidia-smi
#   update_step.md   one optimizer step per call and in jit, jgd and optax, bytes a param and % of a stream
#                    kernel: a 16M leaf and a ResNet-18 tree; SGD momentum, Adam, AdamW, Lion (+ Adam's memory)
#   update_step.json the same, with compile times and the in-jit bytes
#   kernels.md       the kernels of one step of each (a jax.profiler trace), per library
#   traces.tar.gz    the traces themselves (TensorBoard / XProf)
#   sweep.md         64 (and 8) learning rates of the digits MLP, vmapped against one by one
#   gate.txt         tests/core/test_bytes_gate.py compiled for the GPU: jgd's bytes a step at most optax's
#
#   benchmarks/gpu.sh [OUTDIR]            # default: $OUT, else gpu_results
#   benchmarks/gpu.sh --small [OUTDIR]    # a quick run of the same commands at small sizes (a CPU check)
set -euo pipefail

small=0
if [[ "${1:-}" == "--small" ]]; then
  small=1
  shift
fi
out="$(realpath -m "${1:-${OUT:-gpu_results}}")"
mkdir -p "$out"
cd "$(dirname "$0")"
# This checkout's jgd, whatever else is installed.
export PYTHONPATH="$(realpath ..)${PYTHONPATH:+:$PYTHONPATH}"

if ((small)); then
  step_args=(--trees one_leaf resnet_96 --leaf-size 65536 --repeats 2 --loop-steps 2)
  sweep_args=(--sizes 4 --steps 10 --repeats 1)
  limits=(600 600 600)
else
  step_args=(--trees one_leaf resnet18_like --repeats 15 --loop-steps 50)
  sweep_args=(--sizes 8 64 --repeats 3)
  limits=(250 150 60) # seconds for update_step, sweep and the gate: together under 8 minutes
fi

{
  date -u
  python -c "import jax, optax; d = jax.devices()[0]; print('jax', jax.__version__, 'optax', optax.__version__, d.platform, d.device_kind)" || true
  nvidia-smi 2>/dev/null || echo "no nvidia-smi"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

started=$SECONDS
timeout "${limits[0]}" python update_step.py --methods momentum adam adamw lion "${step_args[@]}" \
  --profile "$out" --json "$out/update_step.json" | tee "$out/update_step.md" || echo "update_step failed ($?)"
echo "update_step: $((SECONDS - started)) s"

started=$SECONDS
timeout "${limits[1]}" python sweep.py "${sweep_args[@]}" | tee "$out/sweep.md" || echo "sweep failed ($?)"
echo "sweep: $((SECONDS - started)) s"

started=$SECONDS
gate=(tests/core/test_bytes_gate.py -k "gpu or every or one_more" -rA -p no:cacheprovider)
(cd .. && timeout "${limits[2]}" python -m pytest -q "${gate[@]}" 2>&1 | tail -60) >"$out/gate.txt" || echo "gate failed ($?)"
tail -3 "$out/gate.txt"
echo "gate: $((SECONDS - started)) s"

if [[ -d "$out/traces" ]]; then
  tar -czf "$out/traces.tar.gz" -C "$out" traces && rm -r "$out/traces"
fi
ls -l "$out"
