#!/usr/bin/env bash
# One session's checks on the lent GPU machine (run from the repository root, .gpu carried):
# build the shim against the machine's PyTorch, run the CUDA tests and the whole torch package's
# tests against that libtorch, time forward passes beside PyTorch, then `run` and `embed` on CUDA.
set -uo pipefail
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p "$O"
export PATH=/opt/torch/.venv/bin:$PATH
T=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
stage() { local n=$1 tmo=$2; shift 2; local t0=$SECONDS
  echo "=== $n $(date -u +%T)" >> "$O/summary.txt"
  timeout "$tmo" "$@" > "$O/$n.txt" 2>&1; local rc=$?
  echo "=== $n rc=$rc $((SECONDS - t0)) s" >> "$O/summary.txt"; tail -4 "$O/$n.txt" >> "$O/summary.txt"; return $rc; }
nvidia-smi --query-gpu=name,memory.total --format=csv > "$O/gpu.txt" 2>&1
if ! stage build 300 bash .gpu/run.sh version; then cp -r .gpu/lib/obj "$O/" 2>/dev/null; exit 1; fi
cp .gpu/lib/obj/*.log "$O/" 2>/dev/null
export LD_LIBRARY_PATH=$PWD/.gpu/lib:$T/lib
P=$PWD/.gpu/protoherb
(cd nn && stage nn-cuda 150 ../.gpu/nn.test -test.run CUDA -test.v)
(cd train && stage train-cuda 150 ../.gpu/train.test -test.run CUDA -test.v)
stage bench-r50 150 $P bench embed --device cuda --backbone resnet50 --image-size 224 --batch 256 --threads 16 --iters 10 --warmup 3 --rounds 2 --channels-last --python python3
stage bench-r18 100 $P bench embed --device cuda --backbone resnet18 --image-size 224 --batch 256 --threads 16 --iters 10 --warmup 3 --rounds 2 --channels-last --python python3
stage synth 60 $P synth --out /tmp/syn --species 200 --genera 40 --families 8 --max-per-class 30 --test-per-class 5 --size 1024 --workers 16
stage run 240 $P run --device cuda --data /tmp/syn --out /tmp/runc --budget 90s --threads 16 --quiet
cp /tmp/runc/report.md "$O/run-report.md" 2>/dev/null
stage embed-e2e 90 $P embed --device cuda --model /tmp/runc/runs/pretrain --data /tmp/syn --split train --out /tmp/e.safetensors --workers 16 --threads 16 --batch 128 --quiet
(cd torch && stage torch-all 150 ../.gpu/torch.test -test.v)
echo ALLDONE >> "$O/summary.txt"
