#!/usr/bin/env bash
# Every GPU check in one command, for a machine lent for a few minutes:
#   tests      the GPU tests (pair scan with the hardware popcount, a CUDA trial)
#   estimator  benchmarks/estimator_gpu.py (paper and ImageNet scale on a GPU)
#   training   benchmarks/gpu_training.py, every variant
#   batched    benchmarks/batched.py on the GPU: B = 16, 64 and 256 digits MLPs at once
#   service    `memtail run` (embedded: SQLite, local workers) on the GPU, whose estimator
#              then scans on the GPU too, and `memtail estimate` with the GPU forced
# Each part has its own time limit, so that one slow part cannot cost the others.
# Logs go to $OUT (or ./gpu-logs). From the repository root:
#   bash benchmarks/gpu_session.sh                    # all parts
#   bash benchmarks/gpu_session.sh tests service      # some
# Where the machine lacks sqlalchemy/alembic (the H200 image does), put their wheels
# first on PYTHONPATH (pip install --target DIR, then PYTHONPATH=DIR).
set -u
out=${OUT:-gpu-logs}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
parts=${*:-tests estimator training batched service}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
$python -c 'import torch, triton, numpy; print("torch", torch.__version__, "triton", triton.__version__, "numpy", numpy.__version__, "cpus", torch.get_num_threads())' | tee -a "$out/gpu.txt"
part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  [[ " $parts " == *" $name "* ]] || return 0
  echo "=== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "=== $name: rc $rc in $((SECONDS - start)) s"
}
service() {
  local db=/tmp/memtail-gpu-run
  rm -rf "$db"
  $python -m memtail.cli run --trials 300 --workers 2 --out "$db" || return
  MEMTAIL_ESTIMATOR_DEVICE=cuda $python -m memtail.cli --database-url "sqlite:///$db/memtail.db" \
    estimate digits-mlp || return
  $python -c "
import sqlite3; from memtail.work.estimator import scan_backend
db = sqlite3.connect('$db/memtail.db')
print('scan for MEMTAIL_ESTIMATOR_DEVICE=auto:', scan_backend('auto'))
print('estimate runs (status, trials):', db.execute('SELECT status, trials_used FROM estimate_runs').fetchall())
print('trials by status:', db.execute('SELECT status, count(*) FROM trials GROUP BY status').fetchall())
print('influence rows:', db.execute('SELECT count(*) FROM influence').fetchone()[0])"
}
# The interpreter test is left to CI: Triton 3.6's interpreter fails under NumPy 2.5
# (seen on the H200 image: a 1-element array converted to a scalar).
part tests 90 $python -m pytest -q -p no:cacheprovider --noconftest \
  tests/stats/test_gpuscan.py tests/training/test_trainer.py -k "(gpu or cuda or device or compiled) and not interpreted"
part estimator 150 $python benchmarks/estimator_gpu.py
part training 360 $python benchmarks/gpu_training.py \
  --variants r-eager,f-eager-1024,r-compile,f-compile-1024,f-graphs-1024,r-graphs
batched() {
  for b in 16 64 256; do $python benchmarks/batched.py --device cuda --batch "$b" --rounds 2 || return; done
}
export -f batched service
export python
part batched 240 bash -c batched
part service 200 bash -c service
