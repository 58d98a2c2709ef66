# invgen — make targets. `make demo` and `make test` are all a newcomer needs.

SHELL    := bash
GO       ?= go
SPEC     ?= inventory.yaml
INVGEN   := $(GO) run ./cmd/invgen
PKGS     := ./...

.PHONY: all generate check test test-short demo bench chaos robustness mutants lint services help

all: check lint test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

services: ## start (or install) the Redis and PostgreSQL that tests and the demo use
	@bash scripts/services.sh

generate: ## regenerate the example packages from the root spec
	$(INVGEN) generate -f $(SPEC)

check: ## fail if the committed generated code differs from the spec
	$(INVGEN) check -f $(SPEC)

test: services check ## every test, with the race detector, against real Redis and PostgreSQL
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short: services ## the tests without the race detector (quicker)
	$(GO) test -count=1 -timeout 10m $(PKGS)

demo: services ## a flash sale: 20,000 buyers on one hot SKU, checked against the ledger
	$(GO) run ./examples/flashsale

chaos: services ## the fault-injection suite, long: kill -9 x50, network faults, outages, then 20 seeds of the model-based tester (under 15 minutes)
	set -o pipefail; $(GO) test -count=1 -timeout 15m -run '^TestChaos' -v ./runtime -args -chaos.long \
		| tee chaos.out | grep -E '^\s+chaos_test.go:[0-9]+: (chaos:|retries)|^(--- FAIL|FAIL|ok|PASS)'
	$(MAKE) --no-print-directory robustness

robustness: services ## the model-based fault tester, many seeds (SEEDS=20 FIRST=1); a failure prints its seed and a shrunk plan
	set -o pipefail; $(GO) test -count=1 -timeout 60m -run '^TestRobustness$$' -v ./internal/robustness -args -robustness.long \
		-robustness.seeds=$(or $(SEEDS),20) -robustness.first=$(or $(FIRST),1) | tee robustness.out | grep -E 'seed [0-9]+|^(--- FAIL|FAIL|ok|PASS)'

mutants: services ## plant each bug of scripts/mutants/ one at a time and show that the tests catch it (SEEDS=6)
	bash scripts/mutants.sh

bench: services ## the benchmark table (ratios against baselines in the same run), then Go benchmarks with -benchmem
	$(GO) run ./bench
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./runtime | tee bench.out

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
