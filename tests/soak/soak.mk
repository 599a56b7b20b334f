# tests/soak/soak.mk: make soak (issue 5), included by the Makefile. Not part of make test.
#
#   make soak                   30 s warm-up + SOAK_SECONDS (default 60) of mixed traffic
#                               (wrk + tests/soak/soak.lua) against lighttpd, 2 gateways
#                               and Redis on free loopback ports; fails on any 5xx, a
#                               gateway RSS growth over 10 %, or a bucket that outlives
#                               its TTL. Report: tests/out/soak/report.txt
#   make soak SOAK_SECONDS=600
#
# tests/soak/soak.sh lists its other knobs (SOAK_CONNECTIONS, SOAK_USERS, ...); they are
# read from the environment.

# This file is read before the Makefile's first rule: leave its default goal alone.
SOAK_SAVED_GOAL := $(.DEFAULT_GOAL)

SOAK_SECONDS ?= 60

.PHONY: soak
soak: $(BIN) tests/soak/soak.sh tests/soak/soak.lua
	@SG_BUILD=$(CURDIR)/$(B) SOAK_SECONDS=$(SOAK_SECONDS) tests/soak/soak.sh

.DEFAULT_GOAL := $(SOAK_SAVED_GOAL)
