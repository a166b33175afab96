#!/usr/bin/env bash
# Every GPU measurement of issue 6 in one command, for a machine lent for a few minutes:
# the GPU tests, the training path (target 5) and the estimator on the GPU (target 1).
# Each part has its own time limit, so that one slow part cannot cost the others.
# Logs go to $OUT (or ./gpu-logs). Run from the repository root:  bash benchmarks/gpu_session.sh
set -u
out=${OUT:-gpu-logs}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
$python -c 'import torch, triton, numpy; print("torch", torch.__version__, "triton", triton.__version__, "numpy", numpy.__version__, "cpus", torch.get_num_threads())' | tee -a "$out/gpu.txt"
part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "=== $name: rc $rc in $((SECONDS - start)) s"
}
# The interpreter test is left to CI: Triton 3.6's interpreter fails under NumPy 2.5
# (seen on the H200 image: a 1-element array converted to a scalar).
part tests 60 $python -m pytest -q -p no:cacheprovider --noconftest \
  tests/test_gpuscan.py tests/test_training.py -k "(gpu or cuda or device) and not interpreted"
part estimator 150 $python benchmarks/estimator_gpu.py
part training 360 $python benchmarks/gpu_training.py \
  --variants r-eager,f-eager-1024,r-compile,f-compile-1024,f-graphs-1024,r-graphs
