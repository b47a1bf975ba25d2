# spanshim - zero-code OpenTelemetry tracing for unmodified Linux programs.
#
#   make            build build/libspanshim.so, build/spanshimd, build/spanshim
#   make check      install what is missing, build, run every suite (the test command)
#   make demo       trace real curl and psql against throwaway local servers
#   make bench      benchmarks (print numbers; never fail on timing)
#   make asan|tsan  sanitizer builds of the tools and unit suites, then run those suites
#   make valgrind   the unit suites under memcheck, then real programs traced under memcheck
#                   against a spanshimd under memcheck (tests/valgrind/programs.py)
#   make install    PREFIX=/usr/local DESTDIR= (also BINDIR, LIBDIR, MANDIR, UNITDIR, USERUNITDIR)
#   make clean      remove $(BUILD) and its sanitizer builds $(BUILD)-asan, $(BUILD)-tsan
#   make deps       apt-get what the build and tests need (sudo when not root)
#   make interop-deps  npm ci the OpenTelemetry JS SDK peers into $(BUILD)/interop

.DEFAULT_GOAL := all
BUILD ?= build
GEN := $(BUILD)/gen
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
DESTDIR ?=
OPT ?= -O2 -g
SAN ?=
PYTHON ?= python3

WARN := -Wall -Wextra -Werror
CPPFLAGS += -D_GNU_SOURCE -I. -I$(GEN)
# -fdata-sections: each variable in a section of its own, so that the shim's link can lay
# out its data by size (below).
ALL_CFLAGS = $(OPT) $(WARN) -std=gnu11 -fPIC -pthread -fno-strict-aliasing \
             -fvisibility=hidden -fdata-sections $(SAN) $(CFLAGS)
DEPFLAGS = -MMD -MP
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

PROTOS := $(shell find tools/proto -name '*.proto' | sort)
PB_C := $(patsubst tools/proto/%.proto,$(GEN)/%.pb-c.c,$(PROTOS))
PB_H := $(PB_C:.c=.h)
PB_O := $(patsubst $(GEN)/%.c,$(BUILD)/obj/gen/%.o,$(PB_C))

RUNTIME_O := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard runtime/*.c))
SHIM_O := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard shim/*.c hooks/*.c))
TOOLCOMMON_O := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/common/*.c))
SPANSHIMD_O := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/spanshimd/*.c))
SPANSHIM_O := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/spanshim/*.c))
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(wildcard tests/unit/test_*.c))
PROG_BIN := $(patsubst tests/progs/%.c,$(BUILD)/tests/progs/%,$(wildcard tests/progs/*.c))
BENCH_BIN := $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(wildcard tests/bench/*.c))

LIB := $(BUILD)/libspanshim.so
RTLIB := $(BUILD)/libssrt.a
TOOLLIB := $(BUILD)/libsstools.a
SDLIB := $(BUILD)/libspanshimd.a

.PHONY: all check unit integration demo bench asan tsan install uninstall clean deps proto \
        valgrind fuzz interop-deps
all: $(LIB) $(BUILD)/spanshimd $(BUILD)/spanshim

proto: $(PB_C)
$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: tools/proto/%.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Itools/proto $<

# Every object may include generated headers (generated code included: one .proto's
# header includes those of the files it imports).
$(RUNTIME_O) $(SHIM_O) $(TOOLCOMMON_O) $(SPANSHIMD_O) $(SPANSHIM_O) $(PB_O): | $(PB_C)

# The CURLcode names for error.type, from the curl.h this build compiles against.
$(GEN)/libcurl_codes.h: tools/gen-curl-codes.sh
	@mkdir -p $(GEN)
	sh tools/gen-curl-codes.sh $(CC) $(CPPFLAGS) >$@.tmp && mv $@.tmp $@
$(BUILD)/obj/hooks/libcurl.o: $(GEN)/libcurl_codes.h

# The HTML report's page, script and style are assembled into spanshim (.incbin).
$(BUILD)/obj/tools/spanshim/report_assets.o: $(wildcard tools/spanshim/report/*)

$(BUILD)/obj/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Wno-error -c $< -o $@
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(DEPFLAGS) -c $< -o $@

# Only the hooks are exported. The shim encodes OTLP itself (runtime/otlp.c): no
# protobuf-c, whose descriptors were 11 KiB of pointers for the loader to relocate in
# every process. Every page the shim touches costs a start-up page fault (18 us on the
# 2-core VM): --sort-section=alignment puts the arrays (aligned 32) before the small
# variables (aligned 8 or less), so the few dozen the constructor and exit paths write
# share one or two pages instead of one page each among the big tables.
# The objects whose code every process runs (constructor, exit, a process span) come
# first, so that code shares as few 64 KiB fault-around windows as it can.
LIB_FIRST := $(addprefix $(BUILD)/obj/,shim/shim.o runtime/config.o runtime/log.o \
  runtime/url.o runtime/sanitize.o runtime/kv.o runtime/hostport.o runtime/sys.o \
  runtime/ownfd.o runtime/ids.o runtime/ring.o runtime/span.o hooks/signals.o \
  hooks/process.o runtime/transport.o runtime/exporter.o runtime/stack.o runtime/deadline.o \
  runtime/otlp.o runtime/resource.o runtime/args.o runtime/exceptions.o \
  hooks/socket.o hooks/fdguard.o hooks/dns.o runtime/symbolize.o runtime/netaddr.o)
LIB_O := $(foreach o,$(LIB_FIRST),$(filter $(o),$(SHIM_O) $(RUNTIME_O))) \
         $(filter-out $(LIB_FIRST),$(SHIM_O) $(RUNTIME_O))
$(LIB): $(LIB_O) shim/libspanshim.map
	$(CC) -shared $(SAN) -pthread $(LDFLAGS) -o $@ $(LIB_O) \
	  -Wl,--version-script=shim/libspanshim.map -Wl,-z,now -Wl,-z,nodelete -Wl,--no-undefined \
	  -Wl,--sort-section=alignment -Wl,-fini=ss__fini -ldl

$(RTLIB): $(RUNTIME_O) $(PB_O)
	@rm -f $@
	ar rcs $@ $^
$(TOOLLIB): $(TOOLCOMMON_O)
	@rm -f $@
	ar rcs $@ $^ $(if $(TOOLCOMMON_O),,/dev/null)

TOOL_LIBS = $(TOOLLIB) $(RTLIB) -lprotobuf-c -lpthread -lm -ldl
# spanshimd alone links zlib (upstream). libcurl (upstream), libdw (file:line),
# libpg_query (SQL summaries) and libnghttp2 (OTLP/gRPC) are opened with dlopen when first
# needed (tools/spanshimd/lazy.h); libpg_query by the soname this build would link.
SPANSHIMD_LIBS = -lz
PG_QUERY_SONAME := $(shell objdump -p "$$($(CC) -print-file-name=libpg_query.so)" 2>/dev/null | \
                     awk '/SONAME/ {print $$2}')
$(BUILD)/obj/tools/spanshimd/sqlsum.o: CPPFLAGS += \
  $(if $(PG_QUERY_SONAME),-DSS_PG_QUERY_SONAME='"$(PG_QUERY_SONAME)"')
# Everything of spanshimd but main.c, for spanshimd itself and its unit suites.
$(SDLIB): $(filter-out %/main.o,$(SPANSHIMD_O))
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/spanshimd: $(BUILD)/obj/tools/spanshimd/main.o $(SDLIB) $(TOOLLIB) $(RTLIB)
	$(CC) $(SAN) -pthread $(LDFLAGS) -Wl,--export-dynamic-symbol=spanshimd_collector -o $@ $< \
	  $(SDLIB) $(TOOL_LIBS) $(SPANSHIMD_LIBS)
$(BUILD)/spanshim: $(SPANSHIM_O) $(TOOLLIB) $(RTLIB)
	$(CC) $(SAN) -pthread $(LDFLAGS) -o $@ $(SPANSHIM_O) $(TOOL_LIBS) -lz

# A test program names the libraries it links in a line of its own: /* LIBS: -lpq */
src_libs = $(shell sed -n 's|^/\* LIBS: \(.*\) \*/$$|\1|p' $(1))

$(BUILD)/tests/unit/%: tests/unit/%.c $(TOOLLIB) $(RTLIB) | $(PB_C)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(DEPFLAGS) -fvisibility=default $(LDFLAGS) -o $@ $< \
	  $(TOOL_LIBS) $(CHECK_LIBS)
$(BUILD)/tests/unit/test_spanshimd_%: tests/unit/test_spanshimd_%.c $(SDLIB) $(TOOLLIB) $(RTLIB) | $(PB_C)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(DEPFLAGS) -fvisibility=default $(LDFLAGS) -o $@ $< \
	  $(SDLIB) $(TOOL_LIBS) $(SPANSHIMD_LIBS) $(CHECK_LIBS)
$(BUILD)/tests/progs/%: tests/progs/%.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(WARN) -std=gnu11 -D_GNU_SOURCE -pthread $(LDFLAGS) -o $@ $< \
	  $(call src_libs,$<)
$(BUILD)/tests/bench/%: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g $(WARN) -std=gnu11 -D_GNU_SOURCE -I. -pthread $(LDFLAGS) -o $@ $< \
	  $(call src_libs,$<)

# Fuzzing spanshimd's HTTP parsing, gRPC framing and protobuf decoding (clang's libFuzzer): `make fuzz`
# runs FUZZ_SECONDS (default 300); `make check` runs 20 s when clang is installed.
FUZZ_SECONDS ?= 300
FUZZ_BIN := $(BUILD)/fuzz/fuzz_receiver
FUZZ_SRC := tools/fuzz/fuzz_receiver.c tools/spanshimd/http.c tools/spanshimd/inflate.c \
            tools/fuzz/fuzz_grpc.c tools/spanshimd/grpc.c tools/spanshimd/grpcframe.c \
            tools/spanshimd/decode.c tools/spanshimd/otlp_json_in.c \
            tools/spanshimd/sqlsum.c tools/spanshimd/sampler.c tools/spanshimd/lazy.c \
            tools/common/otlp_json.c \
            tools/common/otlp_wire_json.c \
            tools/common/buf.c tools/common/arena.c tools/common/json.c runtime/sql.c \
            runtime/utf8.c runtime/ids.c runtime/clock.c runtime/sys.c
$(FUZZ_BIN): $(FUZZ_SRC) $(PB_C) tools/spanshimd/spanshimd.h tools/spanshimd/grpc.h tools/common/arena.h \
             tools/spanshimd/lazy.h
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $(CPPFLAGS) -std=gnu11 $(LDFLAGS) -o $@ $(FUZZ_SRC) $(PB_C) -lprotobuf-c -lpg_query -lz -lnghttp2
fuzz: $(FUZZ_BIN)
	@sh tools/fuzz/run.sh $(FUZZ_BIN) $(FUZZ_SECONDS)

deps:
	@sh tools/deps.sh

# The official OpenTelemetry JS SDK, the peers of tests/integration/test_sdk_interop.py:
# installed as tests/interop/package-lock.json pins it, with npm ci, into $(BUILD)/interop.
INTEROP := $(BUILD)/interop/node_modules/.package-lock.json
$(INTEROP): tests/interop/package.json tests/interop/package-lock.json
	@mkdir -p $(BUILD)/interop
	cp tests/interop/package.json tests/interop/package-lock.json $(BUILD)/interop/
	cd $(BUILD)/interop && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
interop-deps: $(INTEROP)

unit: $(UNIT_BIN)
	@sh tests/run-unit.sh $(UNIT_BIN)

integration: all $(PROG_BIN)
	@$(PYTHON) tests/integration/run.py --build $(BUILD)

check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN) $(PROG_BIN)
	@$(MAKE) --no-print-directory interop-deps || \
	  echo "interop: npm ci failed: the JS SDK interop tests will skip"
	@status=0; recap=$(BUILD)/check-recap.txt; : >$$recap; \
	  sh tests/run-unit.sh $(UNIT_BIN) >$(BUILD)/unit.log 2>&1 || status=1; \
	  cat $(BUILD)/unit.log; grep -E '^unit: failed:|^[^ ]+:[0-9]+:[FE]:' $(BUILD)/unit.log | head -n 20 >>$$recap; \
	  $(PYTHON) tests/integration/run.py --build $(BUILD) \
	    --recap $(BUILD)/integration-recap.txt || status=1; \
	  cat $(BUILD)/integration-recap.txt >>$$recap 2>/dev/null; \
	  if command -v clang >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20 || \
	      { status=1; echo "fuzz: failed (see above)" >>$$recap; }; \
	  else echo "fuzz: SKIPPED: no clang"; \
	    case "$${SPANSHIM_TEST_STRICT:-0}" in 0|false|no) ;; *) status=1;; esac; fi; \
	  if [ -s $$recap ]; then echo "check: what failed:"; cat $$recap; fi; \
	  exit $$status

demo: deps
	@$(MAKE) --no-print-directory all
	@sh tools/demo.sh $(BUILD)

bench: all $(PROG_BIN) $(BENCH_BIN)
	@$(MAKE) --no-print-directory interop-deps || \
	  echo "interop: npm ci failed: the OTel JS SDK anchor row will say not run"
	@sh tests/bench/run.sh $(BUILD)

asan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)-asan OPT="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" unit
tsan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)-tsan OPT="-O1 -g" SAN="-fsanitize=thread" unit
valgrind: all $(UNIT_BIN) $(PROG_BIN)
	@for t in $(UNIT_BIN); do CK_FORK=no valgrind -q --error-exitcode=9 \
	  --suppressions=tests/valgrind.supp \
	  --leak-check=full --errors-for-leak-kinds=definite $$t || exit 1; done
	@$(PYTHON) tests/valgrind/programs.py --build $(BUILD)

MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(LIB) $(DESTDIR)$(LIBDIR)/libspanshim.so
	install -m 0755 $(BUILD)/spanshimd $(BUILD)/spanshim $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(USERUNITDIR)
	install -m 0644 tools/man/spanshim.1 $(DESTDIR)$(MANDIR)/man1/spanshim.1
	install -m 0644 tools/man/spanshimd.8 $(DESTDIR)$(MANDIR)/man8/spanshimd.8
	sed 's|@BINDIR@|$(BINDIR)|g' tools/systemd/spanshimd.service \
	  > $(DESTDIR)$(UNITDIR)/spanshimd.service
	sed 's|@BINDIR@|$(BINDIR)|g' tools/systemd/spanshimd-user.service \
	  > $(DESTDIR)$(USERUNITDIR)/spanshimd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/spanshimd.service $(DESTDIR)$(USERUNITDIR)/spanshimd.service
uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libspanshim.so $(DESTDIR)$(BINDIR)/spanshimd \
	  $(DESTDIR)$(BINDIR)/spanshim $(DESTDIR)$(MANDIR)/man1/spanshim.1 \
	  $(DESTDIR)$(MANDIR)/man8/spanshimd.8 $(DESTDIR)$(UNITDIR)/spanshimd.service \
	  $(DESTDIR)$(USERUNITDIR)/spanshimd.service

# The build dir and its sanitizer builds, nothing else (BUILD "", ".", ".." or "/" is refused).
clean:
	$(if $(filter-out . .. / ./,$(patsubst %/,%,$(BUILD))),,$(error clean: refusing BUILD="$(BUILD)"))
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)
