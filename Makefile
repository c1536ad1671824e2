# Hallmark build. `make help` lists the targets.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

GO      ?= go
PKGS    ?= ./...
# Seconds each fuzz target runs under `make fuzz`.
FUZZTIME ?= 60s

.PHONY: help test lint vet fmt-check unit bench generate fuzz deps

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

deps: ## install the system packages and Go modules the tests need
	bash scripts/deps.sh

test: lint unit ## what CI runs: gofmt, vet, unit tests with -race (fuzz seeds included)

lint: fmt-check vet ## gofmt and go vet must be clean

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

bench: ## run every benchmark once and print the ratios
	$(GO) run ./tools/benchratio $(PKGS)

generate: ## regenerate generated code (BPF objects need clang)
	$(GO) generate $(PKGS)

fuzz: ## run each fuzz target for FUZZTIME
	bash scripts/fuzz.sh $(FUZZTIME)

# --- consensus ---
# Seeds per validator count (n = 4 and n = 7) in the simulator sweep that
# `make test` runs without -race, and in the `make sim` soak.
SIM_SEEDS   ?= 500
SOAK_SEEDS  ?= 5000
SOAK_FIRST  ?= 1
SOAK_SIZES  ?= 4,7

.PHONY: sim-sweep sim

test: sim-sweep

sim-sweep: ## consensus simulator: SIM_SEEDS seeds each for n = 4 and n = 7 (no -race: SM2 dominates)
	$(GO) test -count=1 -timeout 20m ./consensus/sim -run '^TestSweep$$' -seeds=$(SIM_SEEDS) -sizes=4,7 -v

sim: ## consensus simulator soak: SOAK_SEEDS seeds per size in SOAK_SIZES from SOAK_FIRST; prints seeds/second
	$(GO) test -count=1 -timeout 0 ./consensus/sim -run '^TestSweep$$' -seeds=$(SOAK_SEEDS) -first=$(SOAK_FIRST) -sizes=$(SOAK_SIZES) -v
