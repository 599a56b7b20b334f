# tests/fuzz/fuzz.mk: the libFuzzer targets (issue 5), included by the Makefile.
#
#   make fuzz                 each target for FUZZ_SECONDS (default 60) over a scratch copy
#                             of its seeds plus its regressions; fails when one crashes
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS="clientip identity"
#   make fuzz-seeds           rewrites the seeds that must be computed (signed tokens and
#                             cursors) from tests/fuzz/mkseeds.c
#
# tests/fuzz/fuzz_<name>.c is built as build/fuzz/fuzz_<name>; its seeds are in
# tests/fuzz/corpus/<name>/, the inputs that once broke it in tests/fuzz/regressions/<name>/
# (tests/integration/90-fuzz.sh runs those and a short fuzz of each target in make test),
# and tests/fuzz/dict/<name>.dict is its libFuzzer dictionary when there is one.
#
# The project's sources (all but fcgi/main.c) are compiled again by clang into
# build/fuzz/obj/ with -fsanitize=fuzzer-no-link,address,undefined; the gcc objects of
# build/ are never touched. The targets are linked with -fsanitize=fuzzer,address,undefined.
# The fuzz targets always come from build/fuzz, whatever B says (as for make asan).

# This file is read before the Makefile's first rule: leave its default goal alone.
FUZZ_SAVED_GOAL := $(.DEFAULT_GOAL)

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_B       := build/fuzz
FUZZ_NAMES   := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_B)/fuzz_%)
FUZZ_MAIN_OBJS := $(FUZZ_NAMES:%=$(FUZZ_B)/obj/tests/fuzz/fuzz_%.o)
# Everything a target may call, and the data the gcc build links the same way: the Lua
# scripts (rconn.c) and, for the targets' own configuration, the default limits.json.
FUZZ_OBJS    := $(patsubst %.c,$(FUZZ_B)/obj/%.o,$(filter-out fcgi/main.c,$(SRCS))) \
                $(FUZZ_B)/obj/tests/fuzz/common.o $(FUZZ_B)/obj/lua/scripts.o \
                $(FUZZ_B)/obj/limits.o
# Any report stops the target (UBSan would print and go on), so libFuzzer sees a crash.
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS   = $(CPPFLAGS) $(PKG_CFLAGS) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(WARN) \
                -pthread
FUZZ_LIBS     = $(PKG_LIBS) -lpthread -lm

.PHONY: fuzz fuzz-seeds

$(FUZZ_B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_B)/obj/lua/scripts.o: $(LUA)
	@mkdir -p $(dir $@)
	ld -r -b binary -z noexecstack -o $@ $(LUA)

$(FUZZ_B)/obj/limits.o: limits.json
	@mkdir -p $(dir $@)
	ld -r -b binary -z noexecstack -o $@ limits.json

$(FUZZ_BINS): $(FUZZ_B)/fuzz_%: $(FUZZ_B)/obj/tests/fuzz/fuzz_%.o $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -pthread -o $@ $^ $(FUZZ_LIBS)

# The seed writer is no fuzz target: the same objects, sanitizers without libFuzzer.
$(FUZZ_B)/mkseeds: $(FUZZ_B)/obj/tests/fuzz/mkseeds.o $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_SAN) -pthread -o $@ $^ $(FUZZ_LIBS)

fuzz: $(FUZZ_BINS)
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-seeds: $(FUZZ_B)/mkseeds
	$(FUZZ_B)/mkseeds tests/fuzz/corpus

-include $(FUZZ_OBJS:.o=.d) $(FUZZ_MAIN_OBJS:.o=.d) $(FUZZ_B)/obj/tests/fuzz/mkseeds.d

.DEFAULT_GOAL := $(FUZZ_SAVED_GOAL)
