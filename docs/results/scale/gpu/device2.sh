#!/usr/bin/env bash
# Second pass: the shim rebuilt with FromFloat32On (one host-to-device copy), the forward benches
# again, PyTorch's own CPU/GPU gradient gap, and the torch package's failures against 2.11.
set -uo pipefail
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p "$O"
export PATH=/opt/torch/.venv/bin:$PATH
T=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
stage() { local n=$1 tmo=$2; shift 2; local t0=$SECONDS
  echo "=== $n $(date -u +%T)" >> "$O/summary.txt"
  timeout "$tmo" "$@" > "$O/$n.txt" 2>&1; local rc=$?
  echo "=== $n rc=$rc $((SECONDS - t0)) s" >> "$O/summary.txt"; tail -4 "$O/$n.txt" >> "$O/summary.txt"; return $rc; }
if ! stage build 200 bash .gpu/run.sh version; then cp .gpu/lib/obj/*.log "$O/" 2>/dev/null; exit 1; fi
export LD_LIBRARY_PATH=$PWD/.gpu/lib:$T/lib
P=$PWD/.gpu/protoherb
stage gradcheck 60 python3 .gpu/gradcheck.py
stage bench-r50 120 $P bench embed --device cuda --backbone resnet50 --image-size 224 --batch 256 --threads 16 --iters 10 --warmup 3 --rounds 2 --channels-last --python python3
stage bench-r18 100 $P bench embed --device cuda --backbone resnet18 --image-size 224 --batch 256 --threads 16 --iters 10 --warmup 3 --rounds 2 --channels-last --python python3
(cd torch && stage torch-all 150 ../.gpu/torch.test -test.v)
grep -E "^(--- FAIL|    --- FAIL)|_test.go:[0-9]+:" "$O/torch-all.txt" | grep -v "RSS after" | head -40 > "$O/torch-fails.txt"
(cd nn && stage nn-cuda 60 ../.gpu/nn.test -test.run CUDA -test.v)
grep -E "FAIL|logits|loss|embedding" "$O/nn-cuda.txt" | head -20 > "$O/nn-fails.txt"
echo ALLDONE >> "$O/summary.txt"
