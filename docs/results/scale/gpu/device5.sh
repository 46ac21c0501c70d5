#!/usr/bin/env bash
# Fifth pass (prepared 2026-12-07, not yet run): where does the CUDA gradient gap come from?
# Compares protoherb's ResNet-18 training step with torchvision's, both on the GPU
# (TestGradientsMatchPyTorchCUDA) and both on the CPU under libtorch 2.x (TestGradientsMatchPyTorch),
# then the CPU-against-GPU test again. Copy to .gpu/ with run.sh, and carry .gpu/ with .gpu/nn.test
# built here: go test -c -tags shimlib -o .gpu/nn.test ./nn
set -uo pipefail
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p "$O"
export PATH=/opt/torch/.venv/bin:$PATH
T=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
bash .gpu/run.sh version > "$O/build.txt" 2>&1 || exit 1
export LD_LIBRARY_PATH=$PWD/.gpu/lib:$T/lib
export PROTOHERB_PYTHON=/opt/torch/.venv/bin/python3
cd nn
timeout 120 ../.gpu/nn.test -test.run 'GradientsMatchPyTorch' -test.v > "$O/nn-vs-pytorch.txt" 2>&1
timeout 120 ../.gpu/nn.test -test.run 'CUDAMatchesCPU' -test.v > "$O/nn-cuda.txt" 2>&1
grep -E "^(--- |    --- |ok|FAIL)" "$O/nn-vs-pytorch.txt" "$O/nn-cuda.txt"
grep -h "differs" "$O/nn-vs-pytorch.txt" | head -12
