# story-gateway: build, run, test and install.
#
#   make            build build/story-gateway
#   make run        install missing packages (as root), build, start redis + lighttpd on :8080
#   make test       install missing packages, build, unit + integration tests
#   make install    PREFIX=/usr/local DESTDIR=

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(PREFIX)/bin
DATADIR := $(PREFIX)/share/story-gateway

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wwrite-strings
PKGS    := fcgi hiredis jansson libjwt libcurl libsodium
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null)

# Any report stops the program (UBSan would print and go on), so no finding can pass.
ifdef SANITIZER
CFLAGS  += -fsanitize=$(SANITIZER) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZER)
endif

CPPFLAGS += -iquote include -D_GNU_SOURCE -DSG_DATADIR='"$(DATADIR)"' -MMD -MP
ALL_CFLAGS = $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(WARN) -pthread
LIBS     = $(PKG_LIBS) -lpthread -lm

# The build folder: make asan builds a sanitized tree in build-asan.
B ?= build
SRCS     := $(sort $(wildcard fcgi/*.c handlers/*.c))
OBJS     := $(SRCS:%.c=$(B)/%.o) $(B)/lua/scripts.o
LIB_OBJS := $(filter-out $(B)/fcgi/main.o,$(OBJS))
LUA      := $(sort $(wildcard lua/*.lua))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

BIN := $(B)/story-gateway
# The fake MistralAI upstream the integration tests start (a FastCGI program).
FAKE_MISTRAL := $(B)/tests/fake-mistral

# make fuzz and the fuzz targets (FUZZ_BINS), make soak: their own files.
-include tests/fuzz/fuzz.mk tests/soak/soak.mk
-include bench/bench.mk

.PHONY: all run test check unit integration deps clean install format format-check lint \
        asan valgrind
all: $(BIN)

$(BIN): $(OBJS)
	$(CC) $(LDFLAGS) -pthread -o $@ $^ $(LIBS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Lua scripts are linked into the binary as data: one source of truth in lua/.
$(B)/lua/scripts.o: $(LUA)
	@mkdir -p $(dir $@)
	ld -r -b binary -z noexecstack -o $@ $(LUA)

$(B)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LIBS) $(CMOCKA_LIBS)

$(FAKE_MISTRAL): tests/fake_mistral/fake_mistral.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LIBS)

deps:
	@scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run.sh

test: deps
	@$(MAKE) --no-print-directory check

check: $(BIN) $(FAKE_MISTRAL) $(UNIT_BINS) $(FUZZ_BINS)
	@tests/run.sh $(UNIT_BINS)

# The whole suite again with the gateway and the unit tests built with AddressSanitizer
# and UndefinedBehaviorSanitizer in build-asan/ (the fake upstream and the fuzz targets
# come from the normal build); then no sanitizer report may appear in any log.
ASAN_B := build-asan
asan:
	@$(MAKE) --no-print-directory B=$(ASAN_B) SANITIZER=address,undefined \
	    $(ASAN_B)/story-gateway $(UNIT_SRCS:tests/unit/%.c=$(ASAN_B)/tests/%)
	@$(MAKE) --no-print-directory $(FAKE_MISTRAL) $(FUZZ_BINS)
	@SG_BUILD=$(CURDIR)/$(ASAN_B) ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    tests/run.sh $(UNIT_SRCS:tests/unit/%.c=$(ASAN_B)/tests/%)
	@tests/sanitizer-reports.sh tests/out

# The unit tests under valgrind memcheck: no error, no definite leak.
valgrind: $(UNIT_BINS)
	@tests/valgrind.sh $(UNIT_BINS)

unit: $(UNIT_BINS)
	@tests/run.sh --unit-only $(UNIT_BINS)

integration: $(BIN) $(FAKE_MISTRAL)
	@tests/run.sh --integration-only

install: $(BIN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)
	install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/story-gateway
	install -m 644 limits.json lighttpd.conf $(DESTDIR)$(DATADIR)/
	cp -R www apache $(DESTDIR)$(DATADIR)/

FORMATTED := $(SRCS) $(wildcard include/*.h) $(UNIT_SRCS) $(wildcard tests/unit/*.h) $(wildcard tests/fuzz/*.c tests/fuzz/*.h) $(wildcard bench/*.c bench/*.h)

format:
	clang-format -i $(FORMATTED)

format-check:
	clang-format --dry-run -Werror $(FORMATTED)

# cppcheck, and the calls STYLE.md bans (their bounded or reentrant forms instead).
BANNED := \b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gmtime|localtime|strerror|gets)\s*\(
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	    -I include $(SRCS)
	@! grep -nP '$(BANNED)' $(SRCS) $(wildcard include/*.h) || \
	    { echo "lint: banned call above"; exit 1; }

clean:
	rm -rf $(B) $(ASAN_B)

-include $(OBJS:.o=.d) $(UNIT_BINS:=.d) $(FAKE_MISTRAL).d
