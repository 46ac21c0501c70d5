# protoherb: two commands do all set-up on a fresh Debian 12 machine:
#   make demo   installs what is missing, builds, runs the whole pipeline on generated data
#   make test   installs what is missing, runs go vet and every test
#
# LIBTORCH=<folder of an unpacked libtorch> points the build at another libtorch (e.g. a CUDA build).

GO        ?= go
BIN       ?= bin/protoherb
DEMO_DIR  ?= demo-out
TEST_TIMEOUT ?= 20m

ifdef LIBTORCH
export CGO_CXXFLAGS := -I$(LIBTORCH)/include -I$(LIBTORCH)/include/torch/csrc/api/include $(CGO_CXXFLAGS)
export CGO_LDFLAGS  := -L$(LIBTORCH)/lib -Wl,-rpath,$(LIBTORCH)/lib -Wl,--no-as-needed $(if $(wildcard $(LIBTORCH)/lib/libtorch_cuda.so),-ltorch_cuda -lc10_cuda) -Wl,--as-needed $(CGO_LDFLAGS)
# NCCL (distributed training on GPUs) is compiled in only where its pieces are all there.
NCCL_READY := $(and $(wildcard $(LIBTORCH)/lib/libtorch_cuda.so),$(wildcard $(LIBTORCH)/include/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp),$(wildcard $(LIBTORCH)/include/nccl.h /usr/include/nccl.h))
export GOFLAGS := $(if $(NCCL_READY),-tags=nccl) $(GOFLAGS)
endif

.PHONY: all deps build test demo bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	$(GO) build -o $(BIN) ./cmd/protoherb

test: deps
	$(GO) vet ./...
	$(GO) test -timeout $(TEST_TIMEOUT) ./...

demo: build
	./$(BIN) demo --out $(DEMO_DIR)

clean:
	rm -rf bin $(DEMO_DIR)
