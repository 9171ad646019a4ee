# slm - `make demo` and `make test` do all the set-up on a fresh Debian 12 machine.
#
#   make demo           install build dependencies, build, generate a story with the bundled model
#   make test           the same set-up, then every test (ctest), then test-neon
#   make test-neon      cross-build the NEON kernels for AArch64 and run their tests under qemu-user
#   make test-sanitize  every test again under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz           build the libFuzzer targets (clang) and run each for FUZZ_SECONDS
#   make bench          kernel and tokenizer micro-benchmarks (Google Benchmark)

BUILD        ?= build
BUILD_ASAN   ?= build-asan
BUILD_FUZZ   ?= build-fuzz
BUILD_ARM64  ?= build-aarch64
JOBS         ?= $(shell nproc)
FUZZ_SECONDS ?= 60

# Every Debian package the build, the tests, the benchmarks and the fuzzers need.
PKGS := cmake make g++ pkg-config libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev \
        libpcre2-dev libcli11-dev libbz2-dev libyaml-cpp-dev libcpp-httplib-dev jq clang libclang-rt-14-dev g++-aarch64-linux-gnu qemu-user
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build demo test test-neon test-sanitize fuzz bench clean

all: build

# Installs only what is missing, so a second run is a no-op.
deps:
	@missing=$$(for p in $(PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "make: installing $$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: deps
	@[ -f $(BUILD)/CMakeCache.txt ] || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/bin/slm run -p "Once upon a time" -n 120 --seed 7

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-neon

# The NEON (+dotprod) kernels: a kernels-only AArch64 build with Debian's cross compiler, whose
# kernel tests (test_kernels, test_kquants, test_gemm, test_sgemm) ctest runs under qemu-aarch64 -cpu max
# (see cmake/aarch64-linux-gnu.cmake). SLM_ISA is cleared so the neon table is the one in use.
test-neon: deps
	@[ -f $(BUILD_ARM64)/CMakeCache.txt ] || cmake -S . -B $(BUILD_ARM64) -DCMAKE_BUILD_TYPE=Release \
	    -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DSLM_KERNELS_ONLY=ON
	cmake --build $(BUILD_ARM64) -j $(JOBS)
	cd $(BUILD_ARM64) && env -u SLM_ISA ctest --output-on-failure -j $(JOBS)

test-sanitize: deps
	@[ -f $(BUILD_ASAN)/CMakeCache.txt ] || cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
	    -DSLM_SANITIZE=ON -DSLM_BUILD_BENCH=OFF
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --output-on-failure -j $(JOBS)

fuzz: deps
	@[ -f $(BUILD_FUZZ)/CMakeCache.txt ] || CXX=clang++ cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DSLM_BUILD_FUZZ=ON -DSLM_BUILD_TESTS=OFF -DSLM_BUILD_BENCH=OFF
	cmake --build $(BUILD_FUZZ) -j $(JOBS)
	bash tests/fuzz/run_fuzzers.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

bench: build
	./$(BUILD)/bench/bench_kernels
	./$(BUILD)/bench/bench_tokenizer

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) $(BUILD_ARM64)
