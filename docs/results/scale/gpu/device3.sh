#!/usr/bin/env bash
# Third pass: TF32 switch in the shim; the CUDA tests with it off, the torch package against 2.11.
set -uo pipefail
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p "$O"
export PATH=/opt/torch/.venv/bin:$PATH
T=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
stage() { local n=$1 tmo=$2; shift 2; local t0=$SECONDS
  echo "=== $n $(date -u +%T)" >> "$O/summary.txt"
  timeout "$tmo" "$@" > "$O/$n.txt" 2>&1; local rc=$?
  echo "=== $n rc=$rc $((SECONDS - t0)) s" >> "$O/summary.txt"; tail -3 "$O/$n.txt" >> "$O/summary.txt"; return $rc; }
if ! stage build 200 bash .gpu/run.sh version; then cp .gpu/lib/obj/*.log "$O/" 2>/dev/null; exit 1; fi
export LD_LIBRARY_PATH=$PWD/.gpu/lib:$T/lib
(cd nn && stage nn-cuda 60 ../.gpu/nn.test -test.run CUDA -test.v)
(cd train && stage train-cuda 60 ../.gpu/train.test -test.run CUDA -test.v)
(cd torch && stage torch-all 120 ../.gpu/torch.test -test.v)
grep -E "^(--- |    --- )(FAIL|SKIP)|_test.go:[0-9]+:" "$O/torch-all.txt" | grep -v "RSS after" | head -30 > "$O/torch-fails.txt"
grep -E "FAIL|differs" "$O/nn-cuda.txt" | head -20 > "$O/nn-fails.txt"
echo ALLDONE >> "$O/summary.txt"
