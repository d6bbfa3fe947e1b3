# Thin wrapper over CMake for the README's commands.
#   make deps-demo  the Debian packages the binary needs (as root)
#   make deps   those and what the tests need: clang, PyTorch (as root)
#   make        release build in build/
#   make test   release + sanitizer builds, every test in both, short fuzz runs
#   make demo   build and run the main job
#   make install PREFIX=DIR   the binary, libcast.so/.a, cast.h, cast.pc, the organism
#   make bench  engine throughput beside PyTorch

JOBS ?= 2
DEBS_RUN = build-essential cmake pkg-config libopenblas-openmp-dev libcjson-dev zlib1g-dev libpcre2-dev libutf8proc-dev libdnnl-dev
DEBS = $(DEBS_RUN) clang libomp-dev libclang-rt-dev python3 python3-torch python3-numpy libopenmpi-dev openmpi-bin
FUZZ_SECONDS ?= 20
SHARED ?= $(abspath ../shared/data)

.PHONY: all build deps deps-demo test test-release test-asan fuzz demo bench install clean

all: build

deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS)

deps-demo:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS_RUN)

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCAST_SHARED_DATA=$(SHARED) >/dev/null
	cmake --build build -j$(JOBS)

build-asan/CMakeCache.txt:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCAST_SANITIZE=ON -DCAST_WERROR=ON -DCAST_SHARED_DATA=$(SHARED) >/dev/null

# the tests build with -Werror (CI runs `make deps test`); a user's `make` does not
test-release:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCAST_WERROR=ON -DCAST_SHARED_DATA=$(SHARED) >/dev/null
	cmake --build build -j$(JOBS)
	ctest --test-dir build --output-on-failure -j$(JOBS)

test-asan: build-asan/CMakeCache.txt
	cmake --build build-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -j$(JOBS)

# libFuzzer targets (clang, ASan + UBSan), FUZZ_SECONDS each, as NAME:MAX_LEN:
# the safetensors header, config.json, tokenizer.json, chat templates with a
# conversation, dataset files, conflict_map.json. Seeds: tests/fuzz/corpus/NAME
# (hand-made, and inputs that once failed) and build-fuzz/corpus-NAME, where
# tests/fuzz/seeds.py puts cut-down copies of the real files in $(SHARED): a
# real tokenizer.json is 2-11 MB and would take seconds a run, so the seeds
# keep its first 1000 vocabulary entries (max_len fits the largest seed, 63 KB).
# -timeout: an input running that long is a hang, and fails the run.
FUZZ_TARGETS = safetensors:4096 config:4096 tokenizer:65536 chat:16384 dataset:8192 conflict_map:8192
FUZZ_NAMES = $(foreach t,$(FUZZ_TARGETS),$(firstword $(subst :, ,$(t))))

fuzz:
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCAST_FUZZ=ON -DCAST_SANITIZE=ON >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target $(addprefix fuzz_,$(FUZZ_NAMES))
	python3 tests/fuzz/seeds.py $(SHARED) build-fuzz
	for t in $(FUZZ_TARGETS); do f=$${t%%:*}; mkdir -p build-fuzz/corpus-$$f; \
	  build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=$${t##*:} -timeout=60 -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/ build-fuzz/corpus-$$f tests/fuzz/corpus/$$f > build-fuzz/fuzz_$$f.log 2>&1 \
	    || { tail -n 40 build-fuzz/fuzz_$$f.log; echo "fuzz_$$f: FAILED"; exit 1; }; \
	  echo "fuzz_$$f: $$(grep -o 'Done [0-9]* runs' build-fuzz/fuzz_$$f.log), no crash"; \
	done

test: fuzz test-asan test-release

demo: build
	build/cast demo --out out/demo --force

# PREFIX/bin/cast, PREFIX/lib/libcast.{so,a}, PREFIX/include/cast.h,
# PREFIX/lib/pkgconfig/cast.pc, PREFIX/share/cast/organism/
PREFIX ?= /usr/local
install: build
	cmake --install build --prefix $(PREFIX)

bench: build
	CAST=build/cast bash bench/compare.sh

clean:
	rm -rf build build-asan build-fuzz
