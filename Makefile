# gradserve: `make serve` runs the service, `make test` runs every test.
# Both install missing Debian packages first (tools/install-deps.sh).

BUILD_DIR ?= build
ADDRESS ?= 0.0.0.0:50051
PYTHON := /usr/bin/python3
# `make python` installs client/python (the gradserve package) here: a venv
# over Debian's packages (numpy, grpcio, protobuf, torch), offline.
VENV ?= $(BUILD_DIR)/venv
# Where this workplace keeps the offline Debian base images' recipe (podman).
SHARED ?= ../shared

# Sanitized builds, each in its own directory (Ninja, ccache like build/).
SANITIZE_DIR ?= build-sanitize
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
# Halt on the first report, with stacks; leaks are detected, except the
# process-lifetime allocations tools/lsan.supp names.
SANITIZER_ENV := \
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:print_summary=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:report_error_type=1 \
  LSAN_OPTIONS=suppressions=$(abspath tools/lsan.supp):print_suppressions=0
# clang links libgomp (as oneDNN does), not its own OpenMP runtime: one
# OpenMP runtime per process.
FUZZ_CMAKE_FLAGS := -DCMAKE_CXX_COMPILER=clang++ -DGRADSERVE_FUZZ=ON \
  -DGRADSERVE_SANITIZE=address,undefined -DGRADSERVE_PYTHON_TESTS=OFF \
  -DOpenMP_CXX_FLAGS=-fopenmp=libgomp -DOpenMP_CXX_LIB_NAMES=gomp \
  -DOpenMP_gomp_LIBRARY=$$(g++ -print-file-name=libgomp.so)

.PHONY: all deps configure build serve test test-cpp test-python test-package python buf-lint buf-breaking test-deploy bench format check-format clean \
  test-sanitize fuzz fuzz-build fuzz-smoke fuzz-corpus test-load

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
	$(MAKE) --no-print-directory test-cpp test-python test-package

test-cpp:
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$$(nproc)

test-python:
	GRADSERVE_BUILD_DIR=$(abspath $(BUILD_DIR)) $(PYTHON) -m pytest -q tests/python

# The Python package (client/python), built with Debian's setuptools and
# stubs generated from proto/ at build time, installed into $(VENV).
python: configure
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/python -m pip install --no-build-isolation --no-index --quiet \
	  --disable-pip-version-check ./client/python

# The package's tests, with the venv's Python: they import the installed
# package, not client/python.
test-package: build python
	cd tests/python_package && GRADSERVE_BUILD_DIR=$(abspath $(BUILD_DIR)) \
	  $(abspath $(VENV))/bin/python -m pytest -q

# buf (npm @bufbuild/buf, tools/buf's lock, installed into build/buf): lint
# the protos with buf.yaml, and check them against the previous commit's
# (BUF_AGAINST) for changes that break the wire or generated code.
BUF := $(BUILD_DIR)/buf/node_modules/.bin/buf
BUF_AGAINST ?= .git\#ref=HEAD~1,subdir=proto
$(BUF): tools/buf/package.json tools/buf/package-lock.json
	@mkdir -p $(BUILD_DIR)/buf
	cp tools/buf/package.json tools/buf/package-lock.json $(BUILD_DIR)/buf/
	cd $(BUILD_DIR)/buf && npm ci --no-audit --no-fund --loglevel=error
	@touch $(BUF)

buf-lint: $(BUF)
	$(BUF) lint

buf-breaking: $(BUF)
	$(BUF) breaking --against '$(BUF_AGAINST)'

# Minutes, not part of `make test`: mixed valid and invalid calls from
# LOAD_CLIENTS clients for LOAD_SECONDS, liars, cancel storms, SIGTERM under
# load (tests/load/load_test.py prints its figures).
LOAD_SECONDS ?= 60
LOAD_CLIENTS ?= 8
test-load: build
	LOAD_SECONDS=$(LOAD_SECONDS) LOAD_CLIENTS=$(LOAD_CLIENTS) \
	  GRADSERVE_BUILD_DIR=$(abspath $(BUILD_DIR)) $(PYTHON) tests/load/load_test.py

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

# Everything built with ASan and UBSan (GCC), then the C++ tests and the
# Python suites, whose server is then the sanitized one. Not part of
# `make test`: the sanitized build alone took an hour on two shared cores.
test-sanitize: deps
	@if [ ! -f $(SANITIZE_DIR)/build.ninja ]; then \
	  cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DGRADSERVE_SANITIZE=address,undefined; \
	fi
	cmake --build $(SANITIZE_DIR)
	$(SANITIZER_ENV) ctest --test-dir $(SANITIZE_DIR) --output-on-failure -j$$(nproc) --timeout 1500
	$(SANITIZER_ENV) GRADSERVE_BUILD_DIR=$(abspath $(SANITIZE_DIR)) $(PYTHON) -m pytest -q tests/python

# The libFuzzer request fuzzer (tests/fuzz), built by clang with ASan and
# UBSan into $(FUZZ_DIR): `make fuzz FUZZ_SECONDS=600`. New inputs go to
# $(FUZZ_DIR)/fuzz-corpus, crashes to $(FUZZ_DIR)/fuzz-artifacts.
# -entropic=0: with the entropic schedule, libFuzzer's own bookkeeping of
# our ~60,000 features took two thirds of the time (144 executions/s);
# without it the same minute ran 449/s and reached more coverage.
# -reload=0: by default a fuzzer re-lists the corpus directory every second
# for inputs other processes added; at ~54,000 files that took 14% of a
# job's time, and a run of two jobs went from 175 to 310 executions/s a job
# without it (each job still writes its finds there, read at the next start).
# FUZZ_ARGS=-fork=2 runs one fuzzer per core.
fuzz-build:
	@tools/install-deps.sh build
	@tools/install-deps.sh fuzz
	@if [ ! -f $(FUZZ_DIR)/build.ninja ]; then \
	  cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(FUZZ_CMAKE_FLAGS); \
	fi
	cmake --build $(FUZZ_DIR) --target request_fuzzer request_fuzz_replay

fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/fuzz-corpus $(FUZZ_DIR)/fuzz-artifacts
	$(SANITIZER_ENV) $(FUZZ_DIR)/tests/fuzz/request_fuzzer \
	  -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=20 -rss_limit_mb=4096 -entropic=0 -reload=0 \
	  -print_final_stats=1 -artifact_prefix=$(abspath $(FUZZ_DIR))/fuzz-artifacts/ \
	  $(FUZZ_ARGS) $(FUZZ_DIR)/fuzz-corpus tests/fuzz/corpus

# A short run (20 s) and the regression inputs, in the fuzz build.
fuzz-smoke: fuzz-build
	$(SANITIZER_ENV) $(FUZZ_DIR)/tests/fuzz/request_fuzz_replay tests/fuzz/regressions tests/fuzz/corpus
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20

# Regenerates the seed corpus (tests/fuzz/make_corpus.py) with build/'s stubs.
fuzz-corpus: build
	GRADSERVE_BUILD_DIR=$(abspath $(BUILD_DIR)) $(PYTHON) tests/fuzz/make_corpus.py tests/fuzz/corpus

bench: build
	$(BUILD_DIR)/tests/bench/gradserve_bench $(ARGS)
	$(BUILD_DIR)/tests/bench/gradserve_bench --onnx_resnet18 --reps=10 $(ARGS)
	$(BENCH_ENV) $(PYTHON) tests/bench/client_bench.py
	$(BENCH_ENV) $(PYTHON) tests/bench/transport_bench.py
	$(BENCH_ENV) $(PYTHON) tests/bench/tiny_call_bench.py
	$(BENCH_ENV) $(PYTHON) tests/bench/user_ratio_bench.py

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

check-format:
	git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror

clean:
	rm -rf $(BUILD_DIR)
