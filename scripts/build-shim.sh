#!/usr/bin/env bash
# build-shim.sh compiles package torch's C++ (torch/shim.cpp, threads.cpp, pickle.cpp, dist.cpp) into
# one shared library, $OUT/libprotoherb_torch.so, against a libtorch of this machine. A protoherb
# binary built with `go build -tags shimlib` links that library instead of libtorch, so the Go side can
# be built on one machine and the C++ side on another (e.g. a GPU machine with a PyTorch pip wheel and
# no Go toolchain); the binary then finds the library through LD_LIBRARY_PATH.
#
# Environment (all optional):
#   LIBTORCH          a libtorch folder with include/ and lib/: an unpacked libtorch zip, a pip wheel's
#                     site-packages/torch, or /usr for Debian's libtorch-dev (include in /usr/include,
#                     libraries in /usr/lib/<multiarch>). Default: python3's torch, else /usr.
#   LIBTORCH_INCLUDE  its headers, when not LIBTORCH/include
#   LIBTORCH_LIB      its libraries, when not LIBTORCH/lib (nor LIBTORCH/lib/<multiarch>)
#   OUT               the output folder (default build/shim, relative to the working directory)
#   CXX               the C++ compiler (default g++)
#   CXX11_ABI         0 or 1: libtorch's _GLIBCXX_USE_CXX11_ABI (default: asked of python's torch when
#                     LIBTORCH is that torch, else read from libc10.so's symbols)
#   CXX_STD           the -std= value (default c++17; c++20 for libtorch 2.12 and later)
#   NCCL=0            leave NCCL out even where it could be compiled in
#   DIST=0            leave c10d (distributed) out: dist.cpp's entry points then return an error
#   GLOO_INCLUDE      a folder with gloo/ headers, for a libtorch that ships none (must be the gloo it
#                     was built with)
#   EXTRA_CXXFLAGS    appended to every compile
#
# dist.cpp is compiled with Gloo when libtorch ships gloo's headers, and with NCCL when libtorch has
# CUDA (libtorch_cuda.so), c10d's ProcessGroupNCCL.hpp, and nccl.h and the CUDA runtime headers are
# found (the pip wheel's nvidia/ packages, CUDA_HOME, /usr/local/cuda, /usr/include). Should that
# compile fail, the script says why and retries without NCCL, then without c10d at all, so the rest
# of protoherb still builds; the library's pt_dist_backends (and `protoherb version`) tells what went in.
set -euo pipefail

say() { printf 'build-shim: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/torch
CXX=${CXX:-g++}
OUT=${OUT:-build/shim}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
OBJ=$OUT/obj
mkdir -p "$OBJ"

# ---- where libtorch is ----
PYTORCH_DIR=""
if command -v python3 >/dev/null 2>&1; then
  PYTORCH_DIR=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null || true)
fi
if [[ -z ${LIBTORCH:-} ]]; then
  if [[ -n $PYTORCH_DIR ]]; then
    LIBTORCH=$PYTORCH_DIR
  elif [[ -e /usr/include/torch/csrc/api/include/torch/torch.h ]]; then
    LIBTORCH=/usr
  else
    die "no libtorch: set LIBTORCH (python3 cannot import torch, and /usr has no libtorch-dev)"
  fi
fi
[[ -d $LIBTORCH ]] || die "LIBTORCH=$LIBTORCH is not a folder"
LIBTORCH=$(cd "$LIBTORCH" && pwd)

INC=${LIBTORCH_INCLUDE:-$LIBTORCH/include}
[[ -e $INC/torch/csrc/api/include/torch/torch.h ]] ||
  die "no torch/csrc/api/include/torch/torch.h under $INC (set LIBTORCH_INCLUDE)"

if [[ -n ${LIBTORCH_LIB:-} ]]; then
  LIB=$LIBTORCH_LIB
elif [[ -e $LIBTORCH/lib/libtorch.so ]]; then
  LIB=$LIBTORCH/lib
else
  MULTIARCH=$("$CXX" -print-multiarch 2>/dev/null || true)
  LIB=$LIBTORCH/lib/$MULTIARCH
fi
for l in torch torch_cpu c10; do
  [[ -e $LIB/lib$l.so ]] || die "no lib$l.so in $LIB (set LIBTORCH_LIB)"
done

# ---- its version, ABI and C++ standard ----
version_of() {  # the value of #define TORCH_VERSION_$1 in libtorch's headers
  local f v
  for f in "$INC/torch/csrc/api/include/torch/version.h" "$INC/torch/headeronly/version.h"; do
    [[ -e $f ]] || continue
    v=$(sed -n "s/^#define TORCH_VERSION_$1 \\([0-9][0-9]*\\).*/\\1/p" "$f")
    if [[ -n $v ]]; then
      echo "${v%%$'\n'*}"
      return 0
    fi
  done
}
MAJOR=$(version_of MAJOR)
MINOR=$(version_of MINOR)
PATCH=$(version_of PATCH)

if [[ -z ${CXX11_ABI:-} ]]; then
  if [[ -n $PYTORCH_DIR && $(cd "$PYTORCH_DIR" && pwd) == "$LIBTORCH" ]]; then
    CXX11_ABI=$(python3 -c 'import torch;print(int(torch.compiled_with_cxx11_abi()))')
  elif nm -D --defined-only "$LIB/libc10.so" 2>/dev/null | grep '__cxx11' >/dev/null; then
    CXX11_ABI=1
  else
    CXX11_ABI=0
  fi
fi
[[ $CXX11_ABI == 0 || $CXX11_ABI == 1 ]] || die "CXX11_ABI=$CXX11_ABI (want 0 or 1)"

if [[ -z ${CXX_STD:-} ]]; then
  CXX_STD=c++17
  if [[ -n $MAJOR && -n $MINOR ]] && ((MAJOR > 2 || (MAJOR == 2 && MINOR >= 12))); then
    CXX_STD=c++20
  fi
fi

CXXFLAGS=(-std="$CXX_STD" -O2 -fPIC -D_GLIBCXX_USE_CXX11_ABI="$CXX11_ABI"
  -I"$INC" -I"$INC/torch/csrc/api/include" -Wno-deprecated-declarations)
# Debian's libtorch-dev lacks the distributed-autograd header that c10d's reducer.hpp includes; the
# stand-in has the two names reducer.hpp needs (see the header). A libtorch that ships it uses its own.
if [[ ! -e $INC/torch/csrc/distributed/autograd/context/context.h ]]; then
  CXXFLAGS+=(-isystem "$SRC/internal/c10dcompat")
fi
# shellcheck disable=SC2206
CXXFLAGS+=(${EXTRA_CXXFLAGS:-})

LDLIBS=(-ltorch -ltorch_cpu -lc10)
CUDA_LIBTORCH=0
if [[ -e $LIB/libtorch_cuda.so ]]; then
  CUDA_LIBTORCH=1
  LDLIBS+=(-ltorch_cuda)
  if [[ -e $LIB/libc10_cuda.so ]]; then LDLIBS+=(-lc10_cuda); fi
fi

# ---- what dist.cpp can have ----
SITE=""
if [[ $(basename "$LIBTORCH") == torch && -d $(dirname "$LIBTORCH")/nvidia ]]; then SITE=$(dirname "$LIBTORCH"); fi
# The folders that may hold the CUDA and NCCL headers c10d's ProcessGroupNCCL.hpp pulls in (nccl.h,
# cuda_runtime_api.h, and through ATen/cuda/CUDAContext.h cublas, cusparse, cusolver): a pip wheel's
# nvidia/*/include first (the versions that torch runs with), then NCCL_INCLUDE, CUDA_HOME and
# /usr/local/cuda. /usr/include is searched anyway.
CUDA_DIRS=()
if [[ -n $SITE ]]; then
  for d in "$SITE"/nvidia/*/include; do
    if [[ -d $d ]]; then CUDA_DIRS+=("$d"); fi
  done
fi
for d in ${NCCL_INCLUDE:+"$NCCL_INCLUDE"} ${CUDA_HOME:+"$CUDA_HOME/include"} /usr/local/cuda/include; do
  if [[ -d $d ]]; then CUDA_DIRS+=("$d"); fi
done
have_header() {  # whether header $1 is in CUDA_DIRS or /usr/include
  local d
  for d in "${CUDA_DIRS[@]}" /usr/include; do
    if [[ -e $d/$1 ]]; then return 0; fi
  done
  return 1
}

DIST_FLAGS=()
HAVE_GLOO=0
if [[ ${DIST:-1} == 0 ]]; then
  say "c10d: left out (DIST=0)"
elif [[ ! -e $INC/torch/csrc/distributed/c10d/TCPStore.hpp ]]; then
  say "c10d: left out (no torch/csrc/distributed/c10d headers under $INC)"
  DIST=0
else
  if [[ ! -e $INC/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp ]]; then
    say "gloo: left out (no c10d/ProcessGroupGloo.hpp)"
    DIST_FLAGS+=(-DPROTOHERB_NO_GLOO)
  elif [[ -e $INC/gloo/algorithm.h ]]; then
    HAVE_GLOO=1
  elif [[ -n ${GLOO_INCLUDE:-} && -e $GLOO_INCLUDE/gloo/algorithm.h ]]; then
    HAVE_GLOO=1
    DIST_FLAGS+=(-isystem "$GLOO_INCLUDE")
  else
    say "gloo: left out (libtorch ships no gloo headers: no $INC/gloo/algorithm.h; GLOO_INCLUDE=<folder> names others, which must be the gloo libtorch was built with)"
    DIST_FLAGS+=(-DPROTOHERB_NO_GLOO)
  fi
  NCCL_FLAGS=()
  why=""
  if [[ ${NCCL:-1} == 0 ]]; then
    why="NCCL=0"
  elif [[ $CUDA_LIBTORCH == 0 ]]; then
    why="libtorch has no libtorch_cuda.so"
  elif [[ ! -e $INC/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp ]]; then
    why="no c10d/ProcessGroupNCCL.hpp"
  else
    for h in nccl.h cuda_runtime_api.h; do
      if ! have_header "$h"; then
        why="no $h found (set NCCL_INCLUDE or CUDA_HOME)"
        break
      fi
    done
    for h in cuda.h cublas_v2.h cusparse.h cusolverDn.h; do
      if [[ -z $why ]] && ! have_header "$h"; then say "nccl: $h not found; trying without it"; fi
    done
  fi
  if [[ -n $why ]]; then
    say "nccl: left out ($why)"
  else
    NCCL_FLAGS=(-DPROTOHERB_NCCL -DUSE_C10D_NCCL)
    for d in "${CUDA_DIRS[@]}"; do NCCL_FLAGS+=(-isystem "$d"); done
  fi
  if [[ $HAVE_GLOO == 0 && ${#NCCL_FLAGS[@]} == 0 ]]; then
    say "c10d: left out (neither gloo nor nccl can be compiled in)"
    DIST=0
  fi
fi

say "libtorch ${MAJOR:-?}.${MINOR:-?}.${PATCH:-?}: include $INC, lib $LIB (cuda: $CUDA_LIBTORCH)"
say "$CXX -std=$CXX_STD, _GLIBCXX_USE_CXX11_ABI=$CXX11_ABI, out $OUT"

# ---- compile, the four files at once ----
compile() {  # compile NAME LOG FLAGS...: torch/NAME.cpp -> obj/NAME.o
  local name=$1 log=$2
  shift 2
  "$CXX" "${CXXFLAGS[@]}" "$@" -c "$SRC/$name.cpp" -o "$OBJ/$name.o" >"$log" 2>&1
}

compile_dist() {  # with everything found, then without NCCL, then without c10d
  local log=$OBJ/dist.log next
  : >"$log"
  if [[ ${DIST:-1} != 0 ]]; then
    if [[ ${#NCCL_FLAGS[@]} -gt 0 ]]; then
      echo "== dist.cpp with nccl (and gloo: $HAVE_GLOO): ${DIST_FLAGS[*]} ${NCCL_FLAGS[*]}" >>"$log"
      if compile dist "$log.try" "${DIST_FLAGS[@]}" "${NCCL_FLAGS[@]}"; then
        cat "$log.try" >>"$log"
        echo "nccl" >"$OBJ/dist.mode"
        return 0
      fi
      cat "$log.try" >>"$log"
      if [[ $HAVE_GLOO == 1 ]]; then next="retrying with Gloo only"; else next="retrying without c10d (-DPROTOHERB_NO_DIST)"; fi
      say "dist.cpp did not compile with NCCL (its first errors below; full log $log); $next"
      grep -m 5 'error' "$log.try" | sed 's/^/    /' >&2 || true
    fi
    if [[ $HAVE_GLOO == 1 ]]; then
      echo "== dist.cpp with gloo only: ${DIST_FLAGS[*]}" >>"$log"
      if compile dist "$log.try" "${DIST_FLAGS[@]}"; then
        cat "$log.try" >>"$log"
        echo "gloo" >"$OBJ/dist.mode"
        return 0
      fi
      cat "$log.try" >>"$log"
      say "dist.cpp did not compile with Gloo (its first errors below; full log $log); retrying without c10d (-DPROTOHERB_NO_DIST)"
      grep -m 5 'error' "$log.try" | sed 's/^/    /' >&2 || true
    fi
  fi
  echo "== dist.cpp without c10d: -DPROTOHERB_NO_DIST" >>"$log"
  compile dist "$log.try" -DPROTOHERB_NO_DIST || {
    cat "$log.try" >>"$log"
    return 1
  }
  cat "$log.try" >>"$log"
  echo "none" >"$OBJ/dist.mode"
}

rm -f "$OBJ"/*.o "$OBJ"/dist.mode
declare -A pids=()
for f in shim threads pickle; do
  compile "$f" "$OBJ/$f.log" &
  pids[$f]=$!
done
(
  st=0
  compile_dist || st=$?
  rm -f "$OBJ/dist.log.try"
  exit $st
) &
pids[dist]=$!

failed=()
for f in shim threads pickle dist; do
  if ! wait "${pids[$f]}"; then
    failed+=("$f")
  fi
done
for f in "${failed[@]}"; do
  say "FAILED: torch/$f.cpp did not compile; its errors ($OBJ/$f.log):"
  grep -m 20 -A3 'error' "$OBJ/$f.log" >&2 || tail -n 30 "$OBJ/$f.log" >&2
done
((${#failed[@]} == 0)) || die "failed to compile: ${failed[*]/%/.cpp}"

# ---- link ----
"$CXX" -shared -o "$OUT/libprotoherb_torch.so" "$OBJ"/{shim,threads,pickle,dist}.o \
  -Wl,-soname,libprotoherb_torch.so -L"$LIB" -Wl,-rpath,"$LIB" \
  -Wl,--no-as-needed "${LDLIBS[@]}" -Wl,--as-needed >"$OBJ/link.log" 2>&1 || {
  cat "$OBJ/link.log" >&2
  die "FAILED: linking $OUT/libprotoherb_torch.so"
}

# Every symbol the library uses must resolve against this libtorch: an undefined one means headers
# and libraries that do not match (version or _GLIBCXX_USE_CXX11_ABI), which would fail at run time.
undef=$(ldd -r "$OUT/libprotoherb_torch.so" 2>&1 | grep 'undefined symbol' | grep 'libprotoherb_torch' || true)
if [[ -n $undef ]]; then
  say "FAILED: libprotoherb_torch.so has symbols this libtorch does not define:"
  if command -v c++filt >/dev/null 2>&1; then c++filt <<<"$undef" | head -n 20 >&2 || true; else head -n 20 <<<"$undef" >&2; fi
  die "headers and libraries do not match (check LIBTORCH_INCLUDE/LIBTORCH_LIB and CXX11_ABI=$CXX11_ABI)"
fi

mode=$(cat "$OBJ/dist.mode")
case $mode in
  nccl) backends=$([[ $HAVE_GLOO == 1 ]] && echo "gloo, nccl" || echo "nccl") ;;
  gloo) backends="gloo" ;;
  *) backends="none (built without c10d)" ;;
esac
say "built $OUT/libprotoherb_torch.so (distributed backends: $backends)"
