# quantkit — plain Makefile. Dependencies through pkg-config: zlib, libcjson,
# openblas, libxxhash, check. Missing ones are installed by
# scripts/ensure-deps.sh (apt-get as root) before anything is compiled.
#
#   make            library (build/libquantkit.a) and tools (bin/)
#   make test       build and run every test
#   make asan       the tests (and tools) under AddressSanitizer + UBSan
#   make demo       the main job on the default model
#   make bench      benchmarks (see bench/README.md)
#   make fuzz       libFuzzer targets (clang); make fuzz-smoke runs each briefly

CC      ?= cc
PKGS    := zlib libcjson openblas libxxhash
BUILD   ?= build
BIN     ?= bin
OPT     ?= -O2 -march=x86-64-v2 -mtune=native
SAN     ?=
CFLAGS_BASE = -std=c11 -g $(OPT) $(SAN) -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE \
              -Iinclude -Icommon -Iformats -pthread -MMD -MP

.DEFAULT_GOAL := all

# Generated once the dependencies are present; make re-reads it after
# building it, so flags are known before any object is compiled.
ifeq ($(filter clean distclean help,$(MAKECMDGOALS)),)
-include $(BUILD)/config.mk
endif

$(BUILD)/config.mk: Makefile scripts/ensure-deps.sh
	@sh scripts/ensure-deps.sh
	@mkdir -p $(BUILD)
	@{ echo "PKG_CFLAGS := $$(pkg-config --cflags $(PKGS))"; \
	   echo "PKG_LIBS := $$(pkg-config --libs $(PKGS)) -lm"; \
	   echo "CHECK_CFLAGS := $$(pkg-config --cflags check)"; \
	   echo "CHECK_LIBS := $$(pkg-config --libs check)"; } > $@.tmp && mv $@.tmp $@

CFLAGS  = $(CFLAGS_BASE) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  = $(PKG_LIBS)

MODULES   := common formats convert quantize eval calibrate
ALL_SRCS  := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
TOOL_SRCS := $(filter $(foreach m,$(MODULES),$(m)/qk_%.c),$(ALL_SRCS))
LIB_SRCS  := $(filter-out $(TOOL_SRCS),$(ALL_SRCS))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
# formats/qk_inspect.c -> bin/qk-inspect
TOOLS     := $(foreach s,$(TOOL_SRCS),$(BIN)/$(subst _,-,$(basename $(notdir $(s)))))
TEST_SRCS := $(wildcard tests/*.c)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libquantkit.a

.PHONY: all test asan demo bench clean distclean help deps tools check-data

all: $(LIB) $(TOOLS)

deps:
	@sh scripts/ensure-deps.sh

$(BUILD)/%.o: %.c $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

define tool_rule
$(BIN)/$(subst _,-,$(basename $(notdir $(1)))): $(BUILD)/$(1:%.c=%.o) $(LIB)
	@mkdir -p $(BIN)
	$$(CC) $$(CFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(TOOL_SRCS),$(eval $(call tool_rule,$(s))))

$(BUILD)/tests/%.o: tests/%.c $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -DQK_SOURCE_DIR='"$(CURDIR)"' -c $< -o $@

$(BUILD)/test_runner: $(TEST_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

# QK_BIN_DIR tells the tool tests which binaries to run.
test: all $(BUILD)/test_runner
	QK_BIN_DIR=$(CURDIR)/$(BIN) $(BUILD)/test_runner

asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/bin OPT="-O1" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

demo: all
	@sh scripts/demo.sh

bench: all
	@sh bench/run.sh

clean:
	rm -rf build build-asan bin

distclean: clean

help:
	@sed -n '1,13p' Makefile

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d)

# ------------------------------------------------------------------ fuzzing
# make fuzz        libFuzzer targets (clang, ASan + UBSan) in build/fuzz/
# make fuzz-smoke  each target for FUZZ_TIME seconds (FUZZ_JOBS at a time) on seeds derived from
#                  ../shared/data (tests/fuzz/seeds.sh) and the committed cases
#                  (tests/fuzz/cases/); fails on any crash, leak or timeout.
# docs/SECURITY.md says more (long runs, adding a target).
FUZZ_CC    ?= clang
FUZZ_DIR   := build/fuzz
FUZZ_TIME  ?= 20
FUZZ_JOBS  ?= 1
FUZZ_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
              -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

.PHONY: fuzz fuzz-build fuzz-smoke

fuzz:
	@sh tests/fuzz/ensure-clang.sh $(FUZZ_CC)
	@$(MAKE) --no-print-directory CC=$(FUZZ_CC) BUILD=$(FUZZ_DIR)/obj BIN=$(FUZZ_DIR)/bin \
	    OPT="-O1 -gline-tables-only" SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" fuzz-build

# Only meaningful inside `make fuzz` (BUILD and flags set there).
.SECONDARY: $(BUILD)/tests/fuzz/fz_util.o
fuzz-build: $(FUZZ_NAMES:%=$(FUZZ_DIR)/%) $(FUZZ_DIR)/mkseeds

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(BUILD)/tests/fuzz/fz_util.o $(LIB) tests/fuzz/fz_util.h
	$(CC) $(CFLAGS) -Itests/fuzz -fsanitize=fuzzer -o $@ $(filter-out %.h,$^) $(LDLIBS)

$(FUZZ_DIR)/mkseeds: tests/fuzz/mkseeds.c $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

fuzz-smoke: fuzz
	@sh tests/fuzz/run.sh -t $(FUZZ_TIME) -j $(FUZZ_JOBS)

-include $(BUILD)/tests/fuzz/fz_util.d
