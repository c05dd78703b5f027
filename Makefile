# Makefile for shop: PostgreSQL e-commerce backend as an extension.
#
# On a fresh Debian 12 machine nothing of PostgreSQL is installed yet, so this
# file must parse without pg_config: the user-facing targets (demo, test,
# bench, deps) first install the packages, then re-enter make, which then
# finds pg_config and includes PGXS for the build itself.

# shop_router: the router of a sharded shop (docs/scale-out.md), needed
# only on router nodes; it requires PL/Proxy (postgresql-15-plproxy)
EXTENSION    = shop shop_router
EXTVERSION   = 1.1
MODULE_big   = shop
# One object per C file, one per line (STYLE.md): a new file is added here
# (docs/hacking.md).
OBJS         = \
	src/attribution.o \
	src/cart.o \
	src/keys.o \
	src/events.o \
	src/experiment.o \
	src/expshow.o \
	src/inventory.o \
	src/orders.o \
	src/payments.o \
	src/recoblend.o \
	src/recolike.o \
	src/recoprofile.o \
	src/relread.o \
	src/recommend.o \
	src/recorebuild.o \
	src/recosimilar.o \
	src/recowrite.o \
	src/redact.o \
	src/saga.o \
	src/searchlog.o \
	src/intentcache.o \
	src/security.o \
	src/shop.o \
	src/spi.o \
	src/sweep.o \
	src/textutil.o \
	src/search/ssbuild.o \
	src/search/sscost.o \
	src/search/ssfunc.o \
	src/search/sshandler.o \
	src/search/sspage.o \
	src/search/ssquery.o \
	src/search/ssscan.o \
	src/search/sssearch.o \
	src/search/sssort.o \
	src/search/sstoken.o \
	src/search/sstypo.o \
	src/search/ssvacuum.o \
	src/search/ssvalidate.o \
	src/search/ssverify.o \
	src/search/sswrite.o
# shop_router.so: the router's session setting (src/router/session.c,
# docs/scale-out.md), loaded only by shop_router's functions on a router
# node; it needs nothing of shop (no tables, no secret, no -lstemmer).
# Built from its own source in src/router/ (MODULES wants the source named
# after the module, hence the two rules below the PGXS include).
MODULES      = shop_router
DATA         = shop--1.0.sql \
               shop--1.0--1.1.sql \
               shop_router--1.0.sql
PGFILEDESC   = "shop - e-commerce backend inside PostgreSQL"
# Monitoring files (docs/operations.md, "Monitoring with Prometheus"):
# installed into $(pg_config --docdir)/extension/
DOCS         = contrib/prometheus/shop-queries.yaml \
               contrib/prometheus/shop-alerts.yaml \
               contrib/grafana/shop.json

# pg_regress suites: one per file in sql/, isolation specs in specs/.
# `make installcheck` runs them against a server of your own; `make test`
# runs everything against a throwaway cluster (scripts/test.sh).
# Four suites need make test's own cluster, so installcheck leaves them out
# (scripts/test.sh runs every file of sql/): server_log reads its log file
# (next to its data directory, with its log_line_prefix; a server of your
# own logs elsewhere), search_log_ring and hostile_search_log_fold need shop
# in shared_preload_libraries (the search log's shared-memory ring).
# hostile_storefront_login connects (\c) as a login role it creates, which
# needs make test's trust authentication (a server of your own may ask a
# password).
REGRESS_OWN_CLUSTER = server_log search_log_ring hostile_search_log_fold hostile_storefront_login
REGRESS      = $(filter-out $(REGRESS_OWN_CLUSTER),$(sort $(basename $(notdir $(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=.
# installcheck's databases are UTF8 whatever the server's default (a
# cluster initdb'd in the C locale defaults to SQL_ASCII, where the
# suites' non-ASCII text cannot be stored); PGXS passes --encoding.
ENCODING     = UTF8
ISOLATION    = $(sort $(basename $(notdir $(wildcard specs/*.spec))))
ISOLATION_OPTS =
# TAP tests (t/*.pl, PostgreSQL::Test::Cluster): crash recovery, a hot
# standby, dump and restore, each on clusters of its own. `make test` runs
# them against this build (scripts/test.sh); see the end of this file for
# why `make installcheck` does not.
TAP_TESTS    = 1

SHLIB_LINK  += -lstemmer
PG_CPPFLAGS += -I$(srcdir)/src
PG_CFLAGS   += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
# every tmp_* directory: tmp_install, tmp_check (test clusters), tmp_demo,
# tmp_bench; scripts/clean.sh first stops any cluster still running there
EXTRA_CLEAN  = $(wildcard tmp_*) results regression.diffs regression.out output_iso

PG_CONFIG   ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) $(shell command -v pg_config 2>/dev/null))

.DEFAULT_GOAL := all
.PHONY: deps demo test bench stress demo-stop dist deb deb-root-check cluster-test cluster-demo cluster-demo-stop

# Install the Debian packages shop needs (no-op when they are present).
deps:
	@scripts/install-deps.sh

# Build, install, start a throwaway cluster, load the real catalog, shop.
demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

demo-stop:
	@scripts/demo.sh stop

# Every suite (pg_regress, isolation, crash, dump/restore) on a throwaway
# cluster; exits non-zero on any failure.
test: deps
	@$(MAKE) --no-print-directory all
	@scripts/test.sh

# The cluster tests (test/cluster, docs/scale-out.md): a router and 4
# shard databases on two clusters; make test runs their short form, this
# also measures the 4-shard search against one node's on a real catalog
# (SHARED_DATA, default ../shared/data) or the synthetic one.
cluster-test: deps
	@$(MAKE) --no-print-directory all
	@CLUSTER_LONG=1 TESTS=cluster scripts/test.sh

# A sharded shop on throwaway clusters (docs/scale-out.md): a router and
# 4 shard databases on two clusters, a catalog loaded through the router,
# a shopping session against it (demo/cluster/); they keep running until
# make cluster-demo-stop.
cluster-demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/cluster-demo.sh

cluster-demo-stop:
	@scripts/cluster-demo.sh stop

# Benchmarks against the baselines, report in bench/results/<date>.md.
# BENCH_SCALE=products, BENCH_ONLY=workload[,workload].
bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh

# The search stress harness (test/stress/run.sh, docs/operations.md): a
# primary and a hot standby under writers, searchers, VACUUM, REINDEX
# CONCURRENTLY and kill -9 for DURATION seconds (default 600); every query
# of a fixed set checked against a sequential scan after each phase.
# STRESS_ARGS="--writers 6 --seed 7 ..." passes further options.
DURATION ?= 600
stress: deps
	@$(MAKE) --no-print-directory all
	@test/stress/run.sh --duration $(DURATION) $(STRESS_ARGS)

# The PGXN release zip: git archive of the committed HEAD, named
# <name>-<version>.zip after HEAD's META.json, which must first pass
# scripts/pgxn-meta-check.pl (PGXN Meta Spec 1.0.0). DIST_DIR=dir puts the
# zip elsewhere. Uncommitted changes are not in it (a warning says so).
DIST_DIR ?= .
dist:
	@git rev-parse --verify -q HEAD >/dev/null || { echo "make dist needs a git checkout with a commit" >&2; exit 1; }
	@git diff --quiet HEAD -- || echo "make dist: uncommitted changes are not in the zip (it is made from HEAD)" >&2
	@git show HEAD:META.json >$(DIST_DIR)/.META.json.check && \
	 scripts/pgxn-meta-check.pl $(DIST_DIR)/.META.json.check $$(git ls-tree -r --name-only HEAD); \
	 status=$$?; rm -f $(DIST_DIR)/.META.json.check; exit $$status
	@name=$$(git show HEAD:META.json | perl -MJSON::PP -e 'local $$/; my $$m = decode_json(<STDIN>); print "$$m->{name}-$$m->{version}"') && \
	 git archive --format=zip --prefix=$$name/ -o $(DIST_DIR)/$$name.zip HEAD && \
	 echo "$(DIST_DIR)/$$name.zip"

# The Debian package postgresql-15-shop_<version>_<arch>.deb, built from
# debian/ (pg_buildext, as postgresql-15-pgvector is) with dpkg-buildpackage
# in tmp_deb/, a git archive of the committed HEAD; DEB_DIR=dir is where the
# .deb goes. Needs debhelper and dpkg-dev (make deps installs them).
DEB_DIR ?= .
deb: deps
	@git rev-parse --verify -q HEAD >/dev/null || { echo "make deb needs a git checkout with a commit" >&2; exit 1; }
	@git diff --quiet HEAD -- || echo "make deb: uncommitted changes are not in the package (it is made from HEAD)" >&2
	@rm -rf tmp_deb && mkdir -p tmp_deb/shop
	@git archive HEAD | tar -x -C tmp_deb/shop
	@cd tmp_deb/shop && dpkg-buildpackage -us -uc -b >../build.log 2>&1 || \
	    { tail -40 ../build.log; echo "dpkg-buildpackage failed: tmp_deb/build.log" >&2; exit 1; }
	@cp tmp_deb/postgresql-*-shop_*.deb $(DEB_DIR)/ && ls $(DEB_DIR)/postgresql-*-shop_*.deb

# The package on a machine that has never seen shop: a minimal Debian 12
# root (debootstrap) installs it with apt, runs CREATE EXTENSION shop CASCADE
# and this checkout's make installcheck (scripts/deb-root-check.sh). Needs
# root and the network; not part of make test (test/deb is).
deb-root-check: deps
	@scripts/deb-root-check.sh

# A pg_config found without the server headers (postgresql-common's
# /usr/bin/pg_config is on machines that have only the client and server
# packages) cannot build an extension: say what to run instead of failing
# on a missing postgres.h.  A PG_CONFIG given by the caller is taken as it
# is (test/system_files installs into a copy of PostgreSQL that has no
# headers, from objects already built).
ifneq ($(PG_CONFIG),)
ifeq ($(origin PG_CONFIG),file)
PG_SERVER_H := $(wildcard $(shell $(PG_CONFIG) --includedir-server 2>/dev/null)/postgres.h)
else
PG_SERVER_H := $(PG_CONFIG)
endif
endif

ifneq ($(PG_SERVER_H),)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
else
all install installcheck clean:
	@echo "PostgreSQL 15 server headers not found (pg_config: $(or $(PG_CONFIG),none)): run 'make deps' (or 'make demo' / 'make test') first" >&2
	@exit 1
endif

# PGXS's installcheck would run t/*.pl with the system's binaries, as the
# user who called make (root on a fresh machine, which initdb refuses), and
# the TAP tests start clusters of their own rather than using the server
# installcheck is pointed at: make test runs them, on this build.
ifneq ($(PG_SERVER_H),)
prove_installcheck = @echo "TAP tests (t/*.pl): run by make test (scripts/test.sh), not by installcheck"
endif

clean: stop-tmp-clusters
.PHONY: stop-tmp-clusters
stop-tmp-clusters:
	@scripts/clean.sh

# shop_router.so from src/router/session.c (PGXS's pattern rules would
# look for shop_router.c next to this Makefile): the object and, with JIT
# (with_llvm), its bitcode
shop_router.o: src/router/session.c
	$(COMPILE.c) -o $@ $<

shop_router.bc: src/router/session.c
	$(COMPILE.c.bc) -o $@ $<

# PGXS tracks no header dependencies unless the server was configured with
# --enable-depend: rebuild every object when any header changes.
$(OBJS): $(wildcard src/*.h src/search/*.h)
