# statemesh — top-level build.
#
#   make                 build everything into build/
#   make run             install deps if missing, build, run the greeter example
#   make test            install deps if missing, build, run every test
#   make SANITIZE=1 ...  the same with ASan+UBSan
#   make fuzz            build the libFuzzer harnesses (clang) and run each FUZZ_SECONDS
#                        (FUZZ_ONLY="storage config": only those)
#   make install PREFIX=/usr/local [DESTDIR=/tmp/stage]   (and make uninstall)
#   make dist            a wheel of the Python SDK in build/dist/ (offline)
#   make clean
#
# Every dependency comes through pkg-config except LevelDB, which ships none.
# The version lives in VERSION (MAJOR.MINOR.PATCH) and nowhere else: it
# becomes build/gen/statemesh/version.h (SM_VERSION, installed with the
# headers), the shared library's SONAME libstatemesh.so.MAJOR, the .pc
# Version and sdk-python/statemesh/_version.py.

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
LIBDIR   ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
PYTHON   ?= /usr/bin/python3
B        := build
CC       ?= cc

VERSION  := $(shell cat VERSION 2>/dev/null)
ifeq ($(shell echo '$(VERSION)' | grep -Ex '[0-9]+\.[0-9]+\.[0-9]+'),)
  $(error VERSION must hold MAJOR.MINOR.PATCH (e.g. 0.1.0), not '$(VERSION)')
endif
VERSION_WORDS := $(subst ., ,$(VERSION))
VERSION_MAJOR := $(word 1,$(VERSION_WORDS))
VERSION_MINOR := $(word 2,$(VERSION_WORDS))
VERSION_PATCH := $(word 3,$(VERSION_WORDS))
SONAME   := libstatemesh.so.$(VERSION_MAJOR)
SO_REAL  := libstatemesh.so.$(VERSION)
VERSION_H := $(B)/gen/statemesh/version.h
PY_VERSION := sdk-python/statemesh/_version.py

PKGS     := grpc libprotobuf-c libconfig libxxhash libmicrohttpd libcrypto
FUZZ_CC  ?= clang
# libFuzzer comes with clang's runtime libraries (Debian: libclang-rt-14-dev).
FUZZ_OK  := $(shell command -v $(FUZZ_CC) >/dev/null && test -f "$$($(FUZZ_CC) -print-file-name=libclang_rt.fuzzer-$$(uname -m).a)" && echo yes)
DEPS_OK  := $(shell pkg-config --exists $(PKGS) cmocka 2>/dev/null && command -v protoc-c >/dev/null && command -v grpc_python_plugin >/dev/null && echo yes)

OPT      ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Werror -Wno-unused-parameter -Wno-comment \
               -fPIC -pthread -I$(B)/gen -Isdk-c/include -Iruntime
ifeq ($(SANITIZE),1)
  OPT      := -O1
  CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS_SAN := -fsanitize=address,undefined
endif
ifeq ($(DEPS_OK),yes)
  PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
  PKG_LIBS   := $(shell pkg-config --libs $(PKGS)) -lleveldb
  CMOCKA_LIBS := $(shell pkg-config --libs cmocka)
endif
CFLAGS  := $(CFLAGS_BASE) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -pthread $(LDFLAGS_SAN)
LIBS    := $(PKG_LIBS) -lm -ldl

# ---- sources ---------------------------------------------------------------
PROTOS      := $(wildcard protocol/statemesh/v1/*.proto) protocol/grpc/health/v1/health.proto
PROTO_C     := $(patsubst protocol/%.proto,$(B)/gen/%.pb-c.c,$(PROTOS))
PROTO_H     := $(PROTO_C:.c=.h)
PROTO_O     := $(patsubst $(B)/gen/%.c,$(B)/obj/gen/%.o,$(PROTO_C))
# etcd's v3 API as our own minimal .proto (runtime/etcd.c): runtime only, not
# in the SDK libraries. protoc-c names its symbols after the packages
# (Etcdserverpb__*, Mvccpb__*).
ETCD_PROTOS := protocol/etcd/mvccpb/kv.proto protocol/etcd/etcdserverpb/rpc.proto
ETCD_PROTO_C := $(patsubst protocol/%.proto,$(B)/gen/%.pb-c.c,$(ETCD_PROTOS))
ETCD_PROTO_O := $(patsubst $(B)/gen/%.c,$(B)/obj/gen/%.o,$(ETCD_PROTO_C))
PROTO_H     += $(ETCD_PROTO_C:.c=.h)
# OTLP's trace export as our own minimal .proto (runtime/trace.c): runtime only.
OTLP_PROTOS := protocol/otlp/trace.proto
OTLP_PROTO_C := $(patsubst protocol/%.proto,$(B)/gen/%.pb-c.c,$(OTLP_PROTOS))
OTLP_PROTO_O := $(patsubst $(B)/gen/%.c,$(B)/obj/gen/%.o,$(OTLP_PROTO_C))
PROTO_H     += $(OTLP_PROTO_C:.c=.h)
PY_GEN_DIR  := sdk-python
PY_PROTOS   := $(wildcard protocol/statemesh/v1/*.proto)
PY_GEN      := $(patsubst protocol/%.proto,$(PY_GEN_DIR)/%_pb2.py,$(PY_PROTOS))

SDK_SRCS    := $(wildcard sdk-c/*.c)
SDK_O       := $(patsubst %.c,$(B)/obj/%.o,$(SDK_SRCS))
RT_SRCS     := $(filter-out runtime/main.c runtime/cli%.c,$(wildcard runtime/*.c))
RT_O        := $(patsubst %.c,$(B)/obj/%.o,$(RT_SRCS)) $(ETCD_PROTO_O) $(OTLP_PROTO_O)
CLI_SRCS    := $(wildcard runtime/cli*.c)
CLI_O       := $(patsubst %.c,$(B)/obj/%.o,$(CLI_SRCS))
UNIT_SRCS   := $(wildcard test/unit/test_*.c)
UNIT_BINS   := $(patsubst test/unit/%.c,$(B)/test/%,$(UNIT_SRCS))
EXAMPLE_SRCS := $(wildcard examples/*/*.c)
EXAMPLE_BINS := $(patsubst examples/%.c,$(B)/examples/%,$(EXAMPLE_SRCS))
TESTFN_SRCS := $(wildcard test/fn/*.c)
TESTFN_BINS := $(patsubst test/fn/%.c,$(B)/test/fn/%,$(TESTFN_SRCS))

# Embedded modules (runtime/embedded.h): examples/X/functions/*.c hold an
# example's handlers; they link into its function server and, with
# functions/module.c, into build/examples/X/libX.so.
GREETER_FN_O := $(B)/obj/examples/greeter/functions/greeter_functions.o
MODULES     := $(B)/examples/greeter/libgreeter.so

ALL := $(B)/statemeshd $(B)/statemesh $(B)/libstatemesh.a $(B)/libstatemesh.so \
       $(B)/statemesh.pc $(EXAMPLE_BINS) $(TESTFN_BINS) $(MODULES) $(PY_GEN) $(PY_VERSION) \
       $(B)/test/libiofail.so

.PHONY: all deps run test unit integration clean install uninstall dist bench bench-bins bench-savepoint bench-forward fuzz fuzz-build \
        fuzz-smoke FORCE
all: deps-check $(ALL)

# Install missing Debian packages only when something is missing.
deps:
	@if [ "$(DEPS_OK)" != "yes" ] || [ "$(FUZZ_OK)" != "yes" ] || ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null || ! $(PYTHON) -c 'import grpc, google.protobuf, pytest, yaml, setuptools, wheel, pip, ensurepip' >/dev/null 2>&1; then \
	  ci/install-deps.sh; fi

deps-check:
	@if [ "$(DEPS_OK)" != "yes" ]; then echo "missing build dependencies: run 'make deps' (or ci/install-deps.sh)"; exit 1; fi

# Rebuild everything when the compiler flags change (e.g. SANITIZE=1).
$(B)/.cflags: FORCE
	@mkdir -p $(B)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@
FORCE:

# Keep generated sources and objects between runs (no needless rebuilds).
.SECONDARY:

# ---- code generation -------------------------------------------------------
$(B)/gen/%.pb-c.c $(B)/gen/%.pb-c.h: protocol/%.proto
	@mkdir -p $(B)/gen
	protoc-c --c_out=$(B)/gen -Iprotocol $<

# ---- the version (VERSION) -------------------------------------------------
$(VERSION_H): VERSION
	@mkdir -p $(dir $@)
	printf '%s\n' '/* Generated from VERSION by the Makefile: do not edit. */' \
	  '#ifndef STATEMESH_VERSION_H' '#define STATEMESH_VERSION_H' \
	  '#define SM_VERSION_MAJOR $(VERSION_MAJOR)' '#define SM_VERSION_MINOR $(VERSION_MINOR)' \
	  '#define SM_VERSION_PATCH $(VERSION_PATCH)' '#define SM_VERSION "$(VERSION)"' '#endif' > $@

$(PY_VERSION): VERSION
	printf '%s\n' '# Generated from VERSION by the Makefile: do not edit.' \
	  '__version__ = "$(VERSION)"' > $@

$(PY_GEN_DIR)/%_pb2.py: protocol/%.proto
	@mkdir -p $(PY_GEN_DIR)
	protoc -Iprotocol --python_out=$(PY_GEN_DIR) --grpc_out=$(PY_GEN_DIR) \
	  --plugin=protoc-gen-grpc=$$(command -v grpc_python_plugin) $<

# ---- objects ---------------------------------------------------------------
$(B)/obj/gen/%.o: $(B)/gen/%.c $(PROTO_H) $(VERSION_H) $(B)/.cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-error -c $< -o $@

$(B)/obj/%.o: %.c $(PROTO_H) $(VERSION_H) $(B)/.cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

# ---- libraries and binaries ------------------------------------------------
$(B)/libstatemesh.a: $(SDK_O) $(PROTO_O)
	@rm -f $@
	ar rcs $@ $^

# libstatemesh.so.MAJOR.MINOR.PATCH with SONAME libstatemesh.so.MAJOR, and
# the two usual links (.so.MAJOR for the loader, .so for the linker).
$(B)/$(SO_REAL): $(SDK_O) $(PROTO_O)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,$(SONAME) -o $@ $^ $(LIBS)

$(B)/libstatemesh.so: $(B)/$(SO_REAL)
	ln -sfn $(SO_REAL) $(B)/$(SONAME)
	ln -sfn $(SONAME) $@

$(B)/libruntime.a: $(RT_O)
	@rm -f $@
	ar rcs $@ $^

# statemeshd carries the whole SDK and exports it to embedded modules, which
# leave the SDK's symbols undefined (one copy of the SDK in the process).
SDK_EXPORTS := -Wl,--export-dynamic-symbol='sm_*' -Wl,--export-dynamic-symbol='statemesh__v1__*'
$(B)/statemeshd: $(B)/obj/runtime/main.o $(B)/libruntime.a $(B)/libstatemesh.a
	$(CC) $(LDFLAGS) -o $@ $(B)/obj/runtime/main.o $(B)/libruntime.a \
	  -Wl,--whole-archive $(B)/libstatemesh.a -Wl,--no-whole-archive $(SDK_EXPORTS) $(LIBS)

CLI_RT_O := $(B)/obj/runtime/savepoint.o $(B)/obj/runtime/crc32c.o $(B)/obj/runtime/valjson.o \
            $(B)/obj/runtime/spjsonl.o $(B)/obj/runtime/address.o $(B)/obj/runtime/spcluster.o
$(B)/statemesh: $(CLI_O) $(CLI_RT_O) $(B)/libstatemesh.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/examples/%: $(B)/obj/examples/%.o $(B)/libstatemesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/examples/greeter/greeter: $(B)/obj/examples/greeter/greeter.o $(GREETER_FN_O) $(B)/libstatemesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/examples/greeter/libgreeter.so: $(B)/obj/examples/greeter/functions/module.o $(GREETER_FN_O)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $^

# The etcd client's test driver (test/integration/test_etcd_client.py).
$(B)/test/fn/etcdtool: $(B)/obj/test/fn/etcdtool.o $(B)/libruntime.a $(B)/libstatemesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/test/fn/%: $(B)/obj/test/fn/%.o $(B)/libstatemesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The I/O-error shim preloaded by test/integration/test_disk.py: plain flags
# (no sanitizer: it is preloaded into whatever build runs).
$(B)/test/libiofail.so: test/fault/iofail.c $(B)/.cflags
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

$(B)/test/%: $(B)/obj/test/unit/%.o $(B)/libruntime.a $(B)/libstatemesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

# The .pc for PREFIX (and LIBDIR, INCLUDEDIR): build/statemesh.pc is
# rewritten whenever they or VERSION change; `make install` writes its own.
# Directories under PREFIX are written relative to ${prefix}.
PC_LIBDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
PC_SED := sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PC_LIBDIR)|g' \
              -e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g'
PC_VARS := $(PREFIX) $(PC_LIBDIR) $(PC_INCLUDEDIR) $(VERSION)
$(B)/.pcvars: FORCE
	@mkdir -p $(B)
	@echo '$(PC_VARS)' | cmp -s - $@ || echo '$(PC_VARS)' > $@

$(B)/statemesh.pc: sdk-c/statemesh.pc.in $(B)/.pcvars
	$(PC_SED) $< > $@

# ---- run, test -------------------------------------------------------------
EXAMPLE ?= greeter
run: deps
	@$(MAKE) --no-print-directory all
	examples/$(EXAMPLE)/run.sh

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# Python SDK unit tests (no runtime), then integration and fault tests
# against the real runtime.
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider
integration: all bench-bins
	@if [ -d sdk-python/tests ]; then PYTHONPATH=$(CURDIR)/sdk-python $(PYTEST) sdk-python/tests; fi
	PYTHONPATH=$(CURDIR)/sdk-python $(PYTEST) $(PYTEST_ARGS) test/integration

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory integration

# ---- fuzzing (docs/fuzzing.md) ----------------------------------------------
# libFuzzer harnesses, test/fuzz/fuzz_NAME.c, built with clang, ASan and UBSan
# into build/fuzz/ from their own objects (the gcc build and SANITIZE=1 do not
# matter here). `make fuzz` runs each for FUZZ_SECONDS; `make fuzz-smoke`
# (part of `make test`) for FUZZ_SMOKE_SECONDS. New inputs go to
# build/fuzz/corpus/NAME; the checked-in seeds (test/fuzz/corpus/NAME) are
# only read. A crash leaves build/fuzz/crash-NAME-* and fails the target.
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 8
FUZZ_ARGS          ?=
FUZZ_ONLY          ?=
FZ          := $(B)/fuzz
FUZZ_NAMES  := $(patsubst test/fuzz/fuzz_%.c,%,$(wildcard test/fuzz/fuzz_*.c))
FUZZ_RUN    := $(if $(FUZZ_ONLY),$(FUZZ_ONLY),$(FUZZ_NAMES))
FUZZ_BINS   := $(addprefix $(FZ)/fuzz_,$(FUZZ_RUN))
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter \
               -Wno-comment -pthread $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
               -I$(B)/gen -Isdk-c/include -Isdk-c -Iruntime $(PKG_CFLAGS)
FZ_SDK_O    := $(patsubst %.c,$(FZ)/obj/%.o,$(SDK_SRCS)) $(patsubst $(B)/gen/%.c,$(FZ)/obj/gen/%.o,$(PROTO_C))
FZ_RT_O     := $(patsubst %.c,$(FZ)/obj/%.o,$(RT_SRCS)) \
               $(patsubst $(B)/gen/%.c,$(FZ)/obj/gen/%.o,$(ETCD_PROTO_C) $(OTLP_PROTO_C))
# What each harness links besides itself: harnesses that #include a runtime
# .c (to reach its statics) leave that file's object out.
FZ_LINK_json      := $(FZ_SDK_O)
FZ_LINK_config    := $(FZ_RT_O) $(FZ_SDK_O)
FZ_LINK_cli_stdin := $(patsubst %.c,$(FZ)/obj/%.o,$(filter-out runtime/cli.c,$(CLI_SRCS))) \
                     $(FZ)/obj/runtime/cli_lib.o $(FZ)/obj/runtime/savepoint.o \
                     $(FZ)/obj/runtime/crc32c.o $(FZ)/obj/runtime/valjson.o \
                     $(FZ)/obj/runtime/spjsonl.o $(FZ)/obj/runtime/address.o \
                     $(FZ)/obj/runtime/spcluster.o $(FZ_SDK_O)
FZ_LINK_spjsonl   := $(FZ)/obj/runtime/spjsonl.o $(FZ)/obj/runtime/valjson.o \
                     $(FZ)/obj/runtime/address.o $(FZ_SDK_O)
FZ_LINK_savepoint := $(FZ)/obj/runtime/savepoint.o $(FZ)/obj/runtime/crc32c.o $(FZ_SDK_O)
FZ_LINK_storage   := $(filter-out $(FZ)/obj/runtime/store.o,$(FZ_RT_O)) $(FZ)/obj/test/fuzz/store_raw.o $(FZ_SDK_O)
FZ_LINK_answer    := $(filter-out $(FZ)/obj/runtime/endpoint.o,$(FZ_RT_O)) $(FZ_SDK_O)
FZ_LINK_ingress   := $(filter-out $(FZ)/obj/runtime/ingress.o $(FZ)/obj/runtime/rpc.o \
                                 $(FZ)/obj/runtime/clusterctl.o,$(FZ_RT_O)) \
                     $(FZ)/obj/test/fuzz/rpc_fake.o $(FZ_SDK_O)

$(FZ)/.cflags: FORCE
	@mkdir -p $(FZ)
	@echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' | cmp -s - $@ || echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' > $@

$(FZ)/obj/gen/%.o: $(B)/gen/%.c $(PROTO_H) $(VERSION_H) $(FZ)/.cflags
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-error -c $< -o $@

# cli.c holds the CLI's main(); libFuzzer brings its own.
$(FZ)/obj/runtime/cli_lib.o: runtime/cli.c $(PROTO_H) $(VERSION_H) $(FZ)/.cflags
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Dmain=statemesh_cli_main -MMD -MP -c $< -o $@

$(FZ)/obj/%.o: %.c $(PROTO_H) $(VERSION_H) $(FZ)/.cflags
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(FZ)/obj -name '*.d' 2>/dev/null)

.SECONDEXPANSION:
$(FZ)/fuzz_%: $(FZ)/obj/test/fuzz/fuzz_%.o $$(FZ_LINK_$$*)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -pthread -o $@ $^ $(LIBS)

fuzz-build: deps-check
	@if [ "$(FUZZ_OK)" != "yes" ]; then echo "fuzz: $(FUZZ_CC) with libFuzzer is missing: run 'make deps' (or ci/install-deps.sh)"; exit 1; fi
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

# Runs every harness for $(1) seconds; stops at the first crash.
define fuzz_run
	@set -e; for n in $(FUZZ_RUN); do \
	  mkdir -p $(FZ)/corpus/$$n; \
	  dict=; if [ -f test/fuzz/$$n.dict ]; then dict=-dict=test/fuzz/$$n.dict; fi; \
	  opts=; if [ -f test/fuzz/$$n.options ]; then opts=$$(cat test/fuzz/$$n.options); fi; \
	  echo "== fuzz_$$n for $(1) s"; \
	  if ! LSAN_OPTIONS=suppressions=test/fuzz/lsan.supp $(FZ)/fuzz_$$n -max_total_time=$(1) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	       -artifact_prefix=$(FZ)/crash-$$n- $$dict $$opts $(FUZZ_ARGS) \
	       $(FZ)/corpus/$$n test/fuzz/corpus/$$n > $(FZ)/fuzz_$$n.log 2>&1; then \
	    tail -n 60 $(FZ)/fuzz_$$n.log; echo "fuzz_$$n FAILED (log: $(FZ)/fuzz_$$n.log)"; exit 1; fi; \
	  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' $(FZ)/fuzz_$$n.log | tr '\n' ' '; echo; \
	done
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))

# Benchmark (not part of `make test`): test/bench/run.py starts a fresh
# runtime per run, drives it with test/bench/loadgen and writes
# build/bench/results.json. QUICK=1: a short set (under a minute).
# BENCH_ARGS: more options for run.py (e.g. BENCH_ARGS="--only embedded").
# The plot (build/bench/scaling.png, test/bench/plot.py) needs python3-matplotlib:
# installed here if missing; if that fails the bench still runs, without the plot.
BENCH_BINS := $(B)/test/bench/loadgen $(B)/test/bench/benchfn $(B)/test/bench/libcounter.so
BENCH_FN_O := $(B)/obj/test/bench/bench_functions.o
# test/integration/test_memory.py drives its long stream with the bench's
# load generator and embedded counter module.
bench-bins: $(BENCH_BINS)
BENCH_APT  := $(if $(filter 0,$(shell id -u)),,sudo -n) env DEBIAN_FRONTEND=noninteractive apt-get
bench: deps-check
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@$(PYTHON) -c 'import matplotlib' 2>/dev/null || { \
	  echo "bench: installing python3-matplotlib (for the plot)"; \
	  { $(BENCH_APT) install -y -qq --no-install-recommends python3-matplotlib || \
	    { $(BENCH_APT) update -qq && $(BENCH_APT) install -y -qq --no-install-recommends python3-matplotlib; }; \
	  } >/dev/null 2>&1 || echo "bench: warning: could not install python3-matplotlib; no plot this time"; }
	$(PYTHON) test/bench/run.py --build $(B) $(if $(filter 1,$(QUICK)),--quick) $(BENCH_ARGS)

# Savepoint create, verify, restore and the ingest dip at 1M addresses
# (test/bench/savepoint_bench.py; SP_BENCH_ARGS="--addresses 10000000" for
# the full set, "--quick" for 200k); writes build/bench/savepoint.json.
bench-savepoint: deps-check
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	$(PYTHON) test/bench/savepoint_bench.py --build $(B) $(SP_BENCH_ARGS)

# Forwarding between cluster nodes (docs/cluster.md, "Routing"): needs etcd.
bench-forward: deps-check
	@$(MAKE) --no-print-directory all
	PYTHONPATH=$(CURDIR)/sdk-python $(PYTHON) test/bench/forward_bench.py $(FWD_BENCH_ARGS)

$(B)/test/bench/loadgen: $(B)/obj/test/bench/loadgen.o $(B)/libstatemesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/test/bench/benchfn: $(B)/obj/test/bench/benchfn.o $(BENCH_FN_O) $(B)/libstatemesh.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/test/bench/libcounter.so: $(B)/obj/test/bench/counter_module.o $(BENCH_FN_O)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $^

# make install PREFIX=DIR [DESTDIR=STAGE]: binaries, the static and shared
# library (with its SONAME links), the SDK headers with the generated ones
# they include, and a statemesh.pc written for PREFIX (never DESTDIR).
INSTALL_SET := $(B)/statemeshd $(B)/statemesh $(B)/libstatemesh.a $(B)/libstatemesh.so $(VERSION_H)
install: deps-check $(INSTALL_SET)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	  $(DESTDIR)$(INCLUDEDIR)/statemesh/v1
	install -m 755 $(B)/statemeshd $(B)/statemesh $(DESTDIR)$(BINDIR)/
	install -m 644 $(B)/libstatemesh.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(B)/$(SO_REAL) $(DESTDIR)$(LIBDIR)/
	ln -sfn $(SO_REAL) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libstatemesh.so
	install -m 644 sdk-c/include/statemesh/*.h $(VERSION_H) $(DESTDIR)$(INCLUDEDIR)/statemesh/
	install -m 644 $(B)/gen/statemesh/v1/*.pb-c.h $(DESTDIR)$(INCLUDEDIR)/statemesh/v1/
	$(PC_SED) sdk-c/statemesh.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/statemesh.pc
	@chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/statemesh.pc

# Removes what `make install` put there (same PREFIX and DESTDIR).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/statemeshd $(DESTDIR)$(BINDIR)/statemesh \
	  $(DESTDIR)$(LIBDIR)/libstatemesh.a $(DESTDIR)$(LIBDIR)/libstatemesh.so \
	  $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/$(SO_REAL) \
	  $(DESTDIR)$(PKGCONFIGDIR)/statemesh.pc
	rm -rf $(DESTDIR)$(INCLUDEDIR)/statemesh

# make dist: build/dist/statemesh-VERSION-py3-none-any.whl, built offline
# with Debian's pip/setuptools/wheel from a copy of the package (so the
# source tree gets no build/ or *.egg-info).
WHEEL := $(B)/dist/statemesh-$(VERSION)-py3-none-any.whl
dist: $(WHEEL)
$(WHEEL): $(PY_GEN) $(PY_VERSION) sdk-python/pyproject.toml sdk-python/README.md \
          $(wildcard sdk-python/statemesh/*.py)
	@$(PYTHON) -c 'import setuptools, wheel, pip' >/dev/null 2>&1 || { \
	  echo "dist: needs python3-setuptools, python3-wheel, python3-pip: run ci/install-deps.sh"; exit 1; }
	rm -rf $(B)/pysrc && mkdir -p $(B)/pysrc $(B)/dist
	cp -r sdk-python/pyproject.toml sdk-python/README.md sdk-python/statemesh $(B)/pysrc/
	find $(B)/pysrc -name __pycache__ -prune -exec rm -rf {} +
	$(PYTHON) -m pip wheel -q --no-build-isolation --no-deps --no-index -w $(B)/dist $(B)/pysrc
	@test -f $@ || { echo "dist: expected $@"; exit 1; }

clean:
	rm -rf $(B) $(PY_GEN_DIR)/statemesh/v1/*_pb2*.py $(PY_VERSION)
