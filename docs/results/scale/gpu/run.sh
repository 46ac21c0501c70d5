#!/usr/bin/env bash
# On the GPU machine, from the repository root: compiles package torch's C++ against the PyTorch pip
# wheel there into .gpu/lib/libprotoherb_torch.so (scripts/build-shim.sh), then runs the protoherb
# binary built elsewhere with -tags shimlib (.gpu/protoherb) with its arguments (default: version).
# .gpu/lib also holds Debian's libjpeg.so.62 and libturbojpeg.so.0, which the binary links.
#   LIBTORCH=<torch folder>  another torch than /opt/torch/.venv's (or python3's)
#   SKIP_BUILD=1             reuse .gpu/lib/libprotoherb_torch.so
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=/opt/torch/.venv
if [[ -x $VENV/bin/python3 ]]; then export PATH=$VENV/bin:$PATH; fi
if [[ -z ${LIBTORCH:-} ]]; then
  LIBTORCH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
fi
export LIBTORCH

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  start=$(date +%s)
  OUT=.gpu/lib bash scripts/build-shim.sh
  echo "run.sh: build-shim.sh took $(($(date +%s) - start)) s" >&2
fi

export LD_LIBRARY_PATH=$PWD/.gpu/lib:$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
missing=$(ldd .gpu/protoherb .gpu/lib/libprotoherb_torch.so | grep 'not found' || true)
if [[ -n $missing ]]; then
  echo "run.sh: libraries not found:" >&2
  echo "$missing" >&2
  exit 1
fi
# LD_BIND_NOW: every symbol the binary and the shim need must resolve now, not at its first call.
if (($# == 0)); then set -- version; fi
LD_BIND_NOW=1 .gpu/protoherb "$@"
