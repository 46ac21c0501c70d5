#!/usr/bin/env bash
# Fourth pass: is the remaining CPU/GPU gradient gap TF32 somewhere else? NVIDIA_TF32_OVERRIDE=0
# turns TF32 off in cuBLAS and cuDNN whatever libtorch asks.
set -uo pipefail
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p "$O"
export PATH=/opt/torch/.venv/bin:$PATH
T=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
bash .gpu/run.sh version > "$O/build.txt" 2>&1 || exit 1
export LD_LIBRARY_PATH=$PWD/.gpu/lib:$T/lib
cd nn
NVIDIA_TF32_OVERRIDE=0 timeout 60 ../.gpu/nn.test -test.run CUDA -test.v > "$O/nn-override.txt" 2>&1
grep -E "^(--- |    --- )" "$O/nn-override.txt"; grep -c differs "$O/nn-override.txt"
grep differs "$O/nn-override.txt" | head -8
