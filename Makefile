# rotor - build, test and run.
#
#   make            build everything into build/ (calls `make deps` first)
#   make run        fetch the default model and serve it (CPU backend)
#   make test       unit tests (cmocka) + integration tests (pytest, vs llama.cpp)
#   make asan       the same tests built with AddressSanitizer + UBSan
#   make fuzz       run the GGUF reader fuzzer (libFuzzer, clang) for FUZZ_SECONDS;
#                   FUZZ_TARGET=openai fuzzes the OpenAI request parsers instead
#   make bench      model benchmark against llama.cpp (see docs/performance.md)
#   make bench-batch  engine: batched decode at 1/4/16/64 sequences, cached-prefix TTFT
#   make bench-router the KV-aware router vs round-robin and least-loaded (TTFT, goodput)
#   make bench-kvbm   the KV block manager's host and disk tiers vs none (TTFT)
#   make bench-server the job's front-end overhead, 1,000 streams, tiny requests/s
#   make deps       install missing Debian and Python packages (idempotent)
#   make format     clang-format every C source
#
# V=1 shows full command lines. SANITIZE=1 is what `make asan` sets.

comma := ,
V ?= 0
Q := $(if $(filter 1,$(V)),,@)
SANITIZE ?= 0
BUILD ?= $(if $(filter 1,$(SANITIZE)),build/asan,build)
CC ?= cc
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
NVCC ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
CUDA_HOME ?= $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(NVCC)),)

# hdf5-openmpi brings Open MPI's include path; ompi-c its library.
PKGS := libpcre2-8 libcjson libxxhash libevent libevent_pthreads hdf5-openmpi ompi-c libcurl
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Debian's iniparser ships no .pc file: fall back to its known location.
INI_CFLAGS = $(shell pkg-config --exists iniparser 2>/dev/null || echo -I/usr/include/iniparser)
INI_LIBS = $(shell pkg-config --exists iniparser 2>/dev/null || echo -liniparser)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

OPT := $(if $(filter 1,$(SANITIZE)),-O1 -g -fno-omit-frame-pointer -fsanitize=address$(comma)undefined -fno-sanitize-recover=undefined,-O3 -g)
CFLAGS_BASE := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
  -Iinclude -Isrc -MMD -MP -pthread $(OPT)
CFLAGS_ALL = $(CFLAGS_BASE) $(PKG_CFLAGS) $(INI_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) $(INI_LIBS) -lm -pthread $(if $(filter 1,$(SANITIZE)),-fsanitize=address$(comma)undefined,)

# SIMD files are compiled for their ISA and only called after a cpuid check.
AVX2_FLAGS := -mavx2 -mfma -mf16c
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni

LIB_SRC := $(sort $(wildcard src/core/*.c src/model/*.c src/cpu/*.c src/tokenizer/*.c \
  src/chat/*.c src/sampling/*.c src/engine/*.c src/hlog/*.c src/frontend/*.c src/job/*.c src/router/*.c src/kvbm/*.c src/transfer/*.c src/planner/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/librotor.a

TOOLS := $(BUILD)/bin/rotor $(BUILD)/bin/rotor-model
RB_SRC := $(sort $(wildcard bench/rb/*.c))
RB_BIN := $(if $(wildcard bench/rb/rb_main.c),$(BUILD)/bin/rotor-bench,)
BENCH_BIN := $(BUILD)/bin/rotor-stream $(RB_BIN)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_REPLAY := $(BUILD)/tests/fuzz_gguf_replay
FUZZ_OPENAI_REPLAY := $(BUILD)/tests/fuzz_openai_replay

CU_SRC := $(sort $(wildcard kernels/*.cu))
CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
CUDA_LIB := $(if $(NVCC),$(BUILD)/lib/librotor_cuda.so,)
# the same interface on the host, for tests without a GPU (tests/cuda_host)
CUDA_HOST_LIB := $(BUILD)/lib/librotor_cuda_host.so
CUDA_BIN := $(if $(NVCC),$(BUILD)/bin/rotor-cuda-check $(CUDA_LIB),)

.PHONY: all build deps run test test-unit test-py asan fuzz bench bench-batch bench-router bench-kvbm bench-disagg bench-planner bench-ep bench-spec bench-server format clean cuda
all: deps build
build: $(TOOLS) $(BENCH_BIN) $(UNIT_BIN) $(FUZZ_REPLAY) $(FUZZ_OPENAI_REPLAY) $(CUDA_BIN) $(CUDA_HOST_LIB)

deps:
	$(Q)bash tools/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  CC $<")
	$(Q)$(CC) $(CFLAGS_ALL) $(if $(findstring _avx512,$<),$(AVX512_FLAGS),$(if $(findstring _avx2,$<),$(AVX2_FLAGS),)) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/rotor: $(BUILD)/obj/src/tools/rotor_main.o $(BUILD)/obj/src/tools/generate.o $(BUILD)/obj/src/tools/tokenize.o $(BUILD)/obj/src/tools/bench_engine.o $(BUILD)/obj/src/tools/serve.o $(BUILD)/obj/src/tools/xfer_bench.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  LD $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/bin/rotor-model: $(BUILD)/obj/src/tools/rotor_model.o $(BUILD)/obj/src/tools/model_vocab.o $(BUILD)/obj/src/tools/tokenizer_export.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  LD $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ -Wl,--as-needed $(LDLIBS_ALL)

$(BUILD)/bin/rotor-bench: $(RB_SRC:%.c=$(BUILD)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  LD $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/bin/rotor-stream: $(BUILD)/obj/bench/stream.o
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  LD $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS_ALL)

$(FUZZ_REPLAY): $(BUILD)/obj/tests/fuzz/fuzz_gguf.o $(BUILD)/obj/tests/fuzz/replay_main.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(FUZZ_OPENAI_REPLAY): $(BUILD)/obj/tests/fuzz/fuzz_openai.o $(BUILD)/obj/tests/fuzz/replay_main.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# CUDA kernels: compiled and linked in every build where nvcc exists, into
# librotor_cuda.so (the CUDA runtime and cuBLAS linked in), which the cuda
# engine backend loads at run time (include/rotor/cuda_load.h); rotor itself
# never links CUDA. The check binary runs the kernels against their C
# references and the cuda engine against the cpu one when a GPU is present.
$(BUILD)/obj/kernels/%.o: kernels/%.cu kernels/rcu.h include/rotor/cuda_kernels.h
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  NVCC $<")
	$(Q)$(NVCC) -O3 -std=c++17 -Iinclude -Ikernels -arch=sm_90 -Xcompiler -Wall,-Werror,-fPIC,-fvisibility=hidden \
		-c $< -o $@

$(CUDA_LIB): $(CU_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  NVCC $@")
	$(Q)$(NVCC) -shared -arch=sm_90 -o $@ $^ -lcublas -Xlinker -rpath,$(CUDA_HOME)/lib64

# --as-needed: only the libraries it calls, so few travel to a GPU machine
# (bench/gpu/pack.sh)
$(BUILD)/bin/rotor-cuda-check: $(BUILD)/obj/kernels/cuda_check_main.o $(LIB) | $(CUDA_LIB)
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  LD $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ -Wl,--as-needed $(LDLIBS_ALL)

$(CUDA_HOST_LIB): tests/cuda_host/cuda_host_api.c include/rotor/cuda_kernels.h
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  CC $@")
	$(Q)$(CC) -O2 -std=c17 -Wall -Wextra -Werror -Iinclude -shared -fPIC -fvisibility=hidden -o $@ $< -lm

$(BUILD)/obj/kernels/cuda_check_main.o: kernels/cuda_check_main.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

cuda: deps $(CUDA_BIN)

test: deps build
	$(Q)bash tests/run_unit.sh $(BUILD)
	$(Q)ROTOR_BUILD=$(BUILD) $(VPY) -m pytest -q tests/py $(PYTEST_ARGS)

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZE=1 test PYTEST_ARGS="-m 'not slow'"

fuzz: deps
	$(Q)bash tests/fuzz/run_fuzz.sh $(or $(FUZZ_TARGET),gguf) $(FUZZ_SECONDS)

bench: deps build
	$(Q)ROTOR_BUILD=$(BUILD) $(VPY) bench/bench_engine.py $(BENCH_ARGS)

bench-server: deps build
	$(Q)ROTOR_BUILD=$(BUILD) $(VPY) bench/bench_server.py --build $(BUILD) $(BENCH_ARGS)

bench-batch: deps build
	$(Q)$(VPY) bench/bench_batch.py --build $(BUILD) $(BENCH_ARGS)

bench-router: deps build
	$(Q)$(VPY) bench/bench_router.py --build $(BUILD) $(BENCH_ARGS)

bench-disagg: deps build
	$(Q)$(VPY) bench/bench_disagg.py --build $(BUILD) $(BENCH_ARGS)

bench-planner: deps build
	$(Q)$(VPY) bench/bench_planner.py --build $(BUILD) $(BENCH_ARGS)

bench-ep: deps build
	$(Q)$(VPY) bench/bench_ep.py --build $(BUILD) $(BENCH_ARGS)

bench-spec: deps build
	$(Q)$(VPY) bench/bench_spec.py --build $(BUILD) $(BENCH_ARGS)

bench-kvbm: deps build
	$(Q)$(VPY) bench/bench_kvbm.py --build $(BUILD) $(BENCH_ARGS)

run: deps build
	$(Q)bash tools/run_local.sh

format:
	$(Q)clang-format -i $$(find src include tests bench kernels -name '*.[ch]' -o -name '*.cu' -o -name '*.cuh')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# keep test objects (make would delete them as intermediates)
.SECONDARY:
