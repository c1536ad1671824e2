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

# --- images ---
.PHONY: test-boot
test-boot: ## boot built images in qemu (TCG) with swtpm: measured boot, A/B update, rollback refusal, fallback
	$(GO) vet -tags boote2e ./firmware/boot/
	$(GO) test -tags boote2e -count=1 -timeout 20m -run TestBootE2E -v ./firmware/boot/
