# bench/bench.mk: make bench (issue 6), included by the Makefile. Not part of make test.
#
#   make bench                  builds the gateway and the two references (build/bench/hop,
#                               build/bench/ideal) and the tools (mint, load), then runs
#                               bench/bench.sh: every scenario for the gateway, hop and
#                               ideal, interleaved, 3 rounds, medians; accuracy and Redis
#                               round trips; one table. Under 10 minutes. Exits 0 even when
#                               a target is missed, unless BENCH_STRICT=1.
#   make bench BENCH_SECONDS=8 BENCH_ROUNDS=5
#   make bench-build            only the binaries
#
# bench/bench.sh lists its knobs (BENCH_CONNECTIONS, BENCH_USERS, ...); they are read from
# the environment. The references are built with the project's flags and warnings.

# This file is read before the Makefile's first rule: leave its default goal alone.
BENCH_SAVED_GOAL := $(.DEFAULT_GOAL)

BENCH_B    := $(B)/bench
BENCH_BINS := $(BENCH_B)/hop $(BENCH_B)/ideal $(BENCH_B)/mint $(BENCH_B)/load
BENCH_CFLAGS = $(CPPFLAGS) -iquote bench $(CFLAGS) $(WARN) -pthread
bench_pkg = $(shell pkg-config --cflags --libs $(1) 2>/dev/null)

.PHONY: bench bench-build
bench-build: $(BIN) $(BENCH_BINS)

bench: bench-build
	@SG_BUILD=$(CURDIR)/$(B) BENCH_BIN=$(CURDIR)/$(BENCH_B) bench/bench.sh

# hop: libfcgi and the thread pool, nothing else.
$(BENCH_B)/hop: bench/hop.c bench/pool.c bench/pool.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ bench/hop.c bench/pool.c $(LDFLAGS) $(call bench_pkg,fcgi)

# ideal: hop + libjwt + hiredis, and the gateway's Lua script linked in as data.
$(BENCH_B)/ideal: bench/ideal.c bench/pool.c bench/pool.h $(B)/lua/scripts.o
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ bench/ideal.c bench/pool.c $(B)/lua/scripts.o $(LDFLAGS) \
	    $(call bench_pkg,fcgi hiredis libjwt jansson) -lm

$(BENCH_B)/mint: bench/mint.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(LDFLAGS) $(call bench_pkg,libjwt)

$(BENCH_B)/load: bench/load.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(LDFLAGS) $(call bench_pkg,libcurl hiredis)

.DEFAULT_GOAL := $(BENCH_SAVED_GOAL)
