# invgen — make targets. `make demo` and `make test` are all a newcomer needs.

SHELL    := bash
GO       ?= go
SPEC     ?= inventory.yaml
INVGEN   := $(GO) run ./cmd/invgen
# Two modules: the runtime (./runtime, what applications import) and the
# generator with its CLI, examples and tests (.); go.work joins them here.
PKGS     := ./... ./runtime/...
# The install steps of README.md and docs/getting-started.md (internal/adopt)
# build invgen in fresh modules: they run after the other tests, not beside
# the timing-sensitive ones.
ADOPT    := ./internal/adopt
TEST_PKGS = $$($(GO) list $(PKGS) | grep -v /internal/adopt$$)
# `make test` runs the tests that use the shared Redis a second time, on
# the local Redis Cluster of scripts/cluster.sh: these packages, less the
# tests that start Redis servers or clusters of their own (the same on
# both passes), plus the one robustness test on the shared Redis.
# The contract tests and the model-based tester run a second time on each
# other engine (INVGEN_ENGINE: MariaDB, SQLite), less the contract tests
# that reach into PostgreSQL itself (a pgx pool or transaction of their own,
# PL/pgSQL triggers, a German server, a child process that joins the test's schema) or fault
# only Redis.
ENGINES      := mysql sqlite
ENGINE_SKIP  := ^(TestChaosKill|TestStreamConcurrentFlushesReportTheRepeat|TestChaosNetwork|TestChaosPostgresDown|TestChaosStreamKill|TestCloseLeavesNoGoroutines|TestDeadlineWhileWaitingForPool|TestDeadlinesUnderPoolPressure|TestFlusherReportsRoundErrors|TestFlusherStopsOnPermanentError|TestIncrCountsPendingPurchasesAsOnSale|TestJanitor|TestLateCommitSettlesOnlyItsAttempt|TestLayoutFirstUseNeedsCreateTables|TestLayoutMismatchRefused|TestLayoutRetiredStopsWithinBound|TestLayoutSwitchStreamToSync|TestLayoutSwitchUnderTraffic|TestManyProcesses|TestNewRefusesTx|TestOneExecutionOneFirstAnswer|TestPendingIncreaseIsNotForSale|TestRefreshDoesNotLoadAfterItsFenceExpired|TestReleaseCountsPendingIncreases|TestStreamFlushBatchRepeatKeepsTheFirst|TestStreamFlushReturnsUnderTraffic|TestChaosClusterFailover|TestFailoverToLaggingReplica|TestChaosRedisRestart|TestRedisBytesPerPurchase|TestLostCommitAnswerIsSettledAtOnce|TestLostJournalEntryDoesNotOversell|TestLocalizedServerRefusalTakesNothing|TestAbortedRestockLeavesNoCapacity|TestChaosHoldKill)$$
ENGINE_TEST = for e in $(ENGINES); do echo "INVGEN_ENGINE=$$e"; \
	INVGEN_ENGINE=$$e $(GO) test -race -count=1 -timeout 15m -skip '$(ENGINE_SKIP)' ./internal/contract && \
	INVGEN_ENGINE=$$e $(GO) test -race -count=1 -timeout 10m -tags invgen_failpoints -run '^TestRobustness$$' ./internal/robustness || exit 1; done
CLUSTER_PKGS := ./internal/contract ./cmd/...
CLUSTER_SKIP := ^(TestFailoverToLaggingReplica|TestChaosClusterFailover|TestChaosRedisRestart|TestRedisBytesPerPurchase)$$
CLUSTER_ALSO := -run '^TestTwoLayouts$$' ./internal/robustness
CLUSTER_TEST = seeds=$$(bash scripts/cluster.sh start) && echo "INVGEN_REDIS_CLUSTER=$$seeds" && \
	INVGEN_REDIS_CLUSTER=$$seeds $(GO) test -race -count=1 -timeout 20m -skip '$(CLUSTER_SKIP)' $(CLUSTER_PKGS) && \
	INVGEN_REDIS_CLUSTER=$$seeds $(GO) test -race -count=1 -timeout 5m $(CLUSTER_ALSO)

.PHONY: all generate check test test-engines test-cluster test-short demo bench chaos robustness mutants lint tidy services cluster help

all: check lint test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

services: ## start (or install) the Redis, PostgreSQL, MariaDB and Redis Cluster that tests and the demo use
	@bash scripts/services.sh

cluster: ## start the local 6-node Redis Cluster (INVGEN_CLUSTER_PORTS, default 7001-7006) and print its seeds
	@bash scripts/cluster.sh start

# The specs of the committed generated packages: the root one and one per
# other engine.
SPECS    := $(SPEC) examples/engines/mysql.yaml examples/engines/sqlite.yaml

generate: ## regenerate the example packages from the specs
	for s in $(SPECS); do $(INVGEN) generate -f $$s || exit 1; done

check: ## fail if the committed generated code differs from the specs
	for s in $(SPECS); do $(INVGEN) check -f $$s || exit 1; done

test: services check ## every test, with the race detector, against real Redis and PostgreSQL; the contract tests on MariaDB and SQLite; then the Redis ones on a Redis Cluster
	$(GO) test -race -count=1 -timeout 20m -tags invgen_failpoints $(TEST_PKGS)
	$(ENGINE_TEST)
	$(GO) test -count=1 -timeout 10m $(ADOPT)
	$(CLUSTER_TEST)

test-cluster: services ## the tests that use the shared Redis, with the race detector, on the local Redis Cluster (INVGEN_REDIS_CLUSTER)
	$(CLUSTER_TEST)

test-engines: services ## the contract tests and the model-based tester on MariaDB and SQLite (INVGEN_ENGINE), with the race detector
	$(ENGINE_TEST)

test-short: services ## the tests without the race detector (quicker)
	$(GO) test -count=1 -timeout 10m -tags invgen_failpoints $(PKGS)

demo: ## a flash sale: 20,000 buyers on one hot SKU, checked against the ledger (PostgreSQL, else SQLite; SQLITE=1 forces SQLite)
	@bash scripts/services.sh redis
	$(GO) run ./examples/flashsale $(if $(SQLITE),-sqlite)

chaos: services ## the fault-injection suite, long: kill -9 x50, network faults, outages, then 20 seeds of the model-based tester (under 15 minutes)
	set -o pipefail; $(GO) test -count=1 -timeout 15m -run '^TestChaos' -v ./internal/contract -args -chaos.long \
		| tee chaos.out | grep -E '^\s+(chaos|failover)_test.go:[0-9]+: (chaos:|retries)|^(--- FAIL|FAIL|ok|PASS)'
	$(MAKE) --no-print-directory robustness

robustness: services ## the model-based fault tester, many seeds (SEEDS=20 FIRST=1 INVGEN_ENGINE=postgresql|mysql|sqlite); a failure prints its seed and a shrunk plan
	set -o pipefail; $(GO) test -count=1 -timeout 60m -tags invgen_failpoints -run '^TestRobustness$$' -v ./internal/robustness -args -robustness.long \
		-robustness.seeds=$(or $(SEEDS),20) -robustness.first=$(or $(FIRST),1) | tee robustness.out | grep -E 'seed [0-9]+|^(--- FAIL|FAIL|ok|PASS)'

mutants: services ## plant each bug of scripts/mutants/ one at a time and show that the tests catch it (SEEDS=6)
	bash scripts/mutants.sh

bench: services ## the benchmark table (ratios against baselines in the same run), then Go benchmarks with -benchmem
	$(GO) run ./bench
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./internal/contract | tee bench.out

tidy: ## go mod tidy of both modules (the main module's against the work tree's runtime)
	cd runtime && GOWORK=off $(GO) mod tidy
	$(GO) mod edit -replace=github.com/invgen/invgen/runtime=./runtime
	GOWORK=off $(GO) mod tidy; status=$$?; $(GO) mod edit -dropreplace=github.com/invgen/invgen/runtime; exit $$status

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
