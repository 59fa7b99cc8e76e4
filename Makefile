# Thin wrapper over CMake (as whisper.cpp does). `make` builds build/cge and libcge;
# `make test` builds and runs the suite twice: plain, and under ASan+UBSan (build-asan/, also
# instrumented for gcov), then the ThreadSanitizer gate (build-tsan/, the threaded tests) and the
# coverage gate (line coverage of the ASan run per module; report in build-asan/coverage/).
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
ASAN_CONFIG = -DCMAKE_BUILD_TYPE=Debug -DCGE_SANITIZE=ON -DCGE_COVERAGE=ON

.PHONY: all deps build install test test-plain test-asan test-tsan coverage bench bench-compare fuzz clean rust-tokenizers gpu-check
PREFIX ?= /usr/local

all: build

deps:
	@scripts/deps.sh

build: deps
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@$(CMAKE) --build build -j $(JOBS)

# make install PREFIX=DIR: libcge.so/.a, cge.h, cge.pc, the cge command, the demo ensemble.
install: build
	@$(CMAKE) --install build --prefix $(PREFIX)

# The Rust tokenizers reference of test_text_rust* (npm, from the committed lockfile).
RUST_TOK = tests/rust-tokenizers
rust-tokenizers:
	@[ -d $(RUST_TOK)/node_modules/tokenizers ] || (cd $(RUST_TOK) && npm ci --ignore-scripts \
	    --no-audit --no-fund --loglevel=error) || echo "test: npm ci in $(RUST_TOK) failed"

test: deps rust-tokenizers
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@$(CMAKE) --build build -j $(JOBS)
	@$(CMAKE) -S . -B build-asan $(ASAN_CONFIG) >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS)
	@JOBS=$(JOBS) scripts/test-all.sh

test-plain: build rust-tokenizers
	@tests/run.sh build

test-asan: deps rust-tokenizers
	@$(CMAKE) -S . -B build-asan $(ASAN_CONFIG) >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1 tests/run.sh build-asan asan

test-tsan: deps
	@JOBS=$(JOBS) scripts/test-tsan.sh build-tsan

# On a machine with an NVIDIA GPU: the CUDA backend against the CPU, then GPU timings (README).
gpu-check: deps
	@JOBS=$(JOBS) scripts/gpu-check.sh build-gpu

# Line coverage per module of the ASan suite run; fails under 90 % for src/, 80 % for tools/.
coverage: deps
	@$(CMAKE) -S . -B build-asan $(ASAN_CONFIG) >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS)
	@scripts/coverage.sh build-asan --run

# The peers (PyTorch, ONNX Runtime, @huggingface/tokenizers) come from Debian and npm; a peer
# that cannot be installed is skipped by its benchmark, never a failure.
bench: build
	@scripts/deps.sh python3-torch libopenblas0-pthread || echo "bench: PyTorch peer unavailable"
	@[ -d bench/node_modules/onnxruntime-node ] || (cd bench && ONNXRUNTIME_NODE_INSTALL=skip \
	    npm ci --no-audit --no-fund --loglevel=error) || echo "bench: npm peers unavailable"
	@$(CMAKE) --build build -j $(JOBS) --target benchmarks
	@bench/run.sh build

# Each figure of the newest `make bench` run against bench/results/baseline.json (or the oldest
# run), normalized by the GEMM peaks measured in each run; flags regressions over 10 %.
bench-compare:
	@bench/compare.py

fuzz: deps
	@CC=clang CXX=clang++ $(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug \
	    -DCGE_SANITIZE=ON -DCGE_FUZZ=ON -DCGE_BUILD_TESTS=OFF >/dev/null
	@$(CMAKE) --build build-fuzz -j $(JOBS)
	@scripts/fuzz-all.sh build-fuzz $${FUZZ_SECONDS:-60}

clean:
	rm -rf build build-asan build-tsan build-fuzz
