# gradserve: `make serve` runs the service, `make test` runs every test.
# Both install missing Debian packages first (tools/install-deps.sh).

BUILD_DIR ?= build
ADDRESS ?= 0.0.0.0:50051
PYTHON := /usr/bin/python3
# Where this workplace keeps the offline Debian base images' recipe (podman).
SHARED ?= ../shared

.PHONY: all deps configure build serve test test-cpp test-python test-deploy bench format check-format clean

all: build

deps:
	@tools/install-deps.sh

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release; \
	fi

build: configure
	cmake --build $(BUILD_DIR)

serve: build
	$(BUILD_DIR)/server/gradserve --address=$(ADDRESS) $(ARGS)

test: build
	$(MAKE) --no-print-directory test-cpp test-python

test-cpp:
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$$(nproc)

test-python:
	GRADSERVE_BUILD_DIR=$(abspath $(BUILD_DIR)) $(PYTHON) -m pytest -q tests/python

# Minutes, not part of `make test`: the Docker image (built with podman),
# replicas behind nginx, graceful shutdown under load, the manifests.
test-deploy: build
	@tools/install-deps.sh deploy
	@if ! podman image exists docker.io/library/debian:bookworm-slim && \
	    [ -x $(SHARED)/container/make-base-images.sh ]; then \
	  $(SHARED)/container/make-base-images.sh; fi
	@if [ -f $(SHARED)/container/containers.conf ]; then \
	  export CONTAINERS_CONF=$(abspath $(SHARED))/container/containers.conf; fi; \
	GRADSERVE_BUILD_DIR=$(abspath $(BUILD_DIR)) $(PYTHON) -m pytest -v -s -p no:cacheprovider tests/deploy

# The same allocator settings for every process measured (gradserve's
# --malloc_retain_mb default), and single-threaded OpenBLAS under PyTorch.
BENCH_ENV := MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=536870912 \
  OPENBLAS_NUM_THREADS=1 GRADSERVE_BUILD_DIR=$(abspath $(BUILD_DIR))

bench: build
	$(BUILD_DIR)/tests/bench/gradserve_bench $(ARGS)
	$(BENCH_ENV) $(PYTHON) tests/bench/client_bench.py

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

check-format:
	git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror

clean:
	rm -rf $(BUILD_DIR)
