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

test: lint unit test-softhsm ## what CI runs: gofmt, vet, unit tests with -race (fuzz seeds included), PKCS#11 tests

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

# --- storage ---
.PHONY: test-storage bench-storage
test-storage: ## storage and erasure tests with -race (mounts a tmpfs and an ext4 loop image as root)
	$(GO) test -race -count=1 ./storage/...

bench-storage: ## storage benchmarks: commit blocks/s and tx/s, shard encode/rebuild, amplification
	$(GO) test -run '^$$' -bench . -benchtime 10x ./storage/...

# --- netstack ---
.PHONY: generate-xdp bench-xdp
generate-xdp: ## rebuild the XDP object and its Go bindings (needs clang)
	$(GO) generate ./netstack/xdp
bench-xdp: ## flood figure: junk drops/s and valid tx/s with XDP vs the Go twin (root, netns)
	$(GO) test -run '^$$' -bench '^BenchmarkFlood$$' -benchtime 1x ./netstack/xdp/

# --- ledger ---
.PHONY: bench-ledger fuzz-ledger
bench-ledger: ## ledger execution: BenchmarkApplyBlock (1,000 record puts, without and with SM2 verification)
	$(GO) test -run '^$$' -bench BenchmarkApplyBlock -benchtime 20x ./ledger/app/

fuzz-ledger: ## fuzz the ledger application's decoders and apply path for FUZZTIME each
	for t in FuzzApplyRandomBlocks FuzzApplyRawBody; do $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./ledger/app/ || exit 1; done
	for t in FuzzDecodeBody FuzzParseRecordPut; do $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./ledger/txs/ || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./ledger/envelope/

# --- gm ---
# `make bench` takes BENCH (regexp), BENCHTIME, BENCHCOUNT, BENCHROUNDS and BENCHPKG
# (import-path regexp) from the environment or the make command line.
.PHONY: bench-gm
bench-gm: ## gm benchmarks only, with the SM2/P-256 and emmansun/tjfoc ratios
	$(GO) run ./tools/benchratio ./gm/

# --- hsm ---
.PHONY: test-hsm test-softhsm bench-hsm
test-hsm: ## key custody and hallmarkctl key tests against a real swtpm
	$(GO) test -race -count=1 ./hsm/... ./cmd/hallmarkctl/

test-softhsm: ## PKCS#11 plumbing tests against SoftHSM2 (cgo, build tag pkcs11)
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags pkcs11 ./hsm/...

bench-hsm: ## sign latency per custody backend (swtpm native, sealed, dev) and unseal cost
	$(GO) test -run '^$$' -bench 'Sign|Unseal' -benchtime 500x -count 3 ./hsm/

# --- images ---
.PHONY: test-boot
test-boot: ## boot built images in qemu (TCG) with swtpm: hallmarkd commits a chain under a measured-boot sealed key, across an A/B update, a refused rollback and a fallback
	$(GO) vet -tags boote2e ./firmware/boot/
	$(GO) test -tags boote2e -count=1 -timeout 20m -run TestBootE2E -v ./firmware/boot/

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

# --- runtime ---
# `make run` options: RATE (demo kiosk records per second), FRESH=1 (start a
# new chain instead of resuming the one in ./run), NODES.
RATE  ?= 20
NODES ?= 4
.PHONY: build run test-runtime

build: ## build bin/hallmarkd and bin/hallmarkctl
	$(GO) build -o bin/hallmarkd ./cmd/hallmarkd
	$(GO) build -o bin/hallmarkctl ./cmd/hallmarkctl

run: ## local consortium: 4 nodes on loopback, each key in its own swtpm, and a demo kiosk (RATE=20, FRESH=1)
	bash scripts/deps.sh
	$(MAKE) --no-print-directory build
	exec bin/hallmarkctl devnet --dir run --hallmarkd bin/hallmarkd --nodes $(NODES) --rate $(RATE) $(if $(FRESH),--fresh,)

test-runtime: ## node runtime tests with -race: in-process 1- and 4-node clusters, API, swtpm, devnet
	$(GO) test -race -count=1 ./firmware/... ./tools/devnet/ ./client/ ./cmd/hallmarkctl/

# --- cluster ---
# Multi-process tests: four hallmarkd processes, each in its own network
# namespace with its own swtpm (root), and the end-to-end benchmark.
BENCH_CLUSTER_FLAGS ?=
.PHONY: test-cluster bench-cluster

test-cluster: ## fault tests: 4 hallmarkd + swtpm in network namespaces; SIGKILL, partitions (nftables), a Byzantine validator
	$(GO) vet -tags cluster ./firmware/clustertest/
	$(GO) test -tags cluster -race -count=1 -timeout 20m -v ./firmware/clustertest/

bench-cluster: build ## end-to-end: 4 nodes + swtpm on loopback, kiosk load; committed tps / (2-core SM2 verify rate / 4), latency, RSS
	$(GO) run ./tools/benchcluster -hallmarkd bin/hallmarkd $(BENCH_CLUSTER_FLAGS)

# --- provisioning ---
# The ceremonies end to end with hallmarkctl against hallmarkd processes in
# network namespaces, each with its own swtpm (root; build tag provisioning).
.PHONY: test-provisioning
test-provisioning: ## ceremonies end to end: genesis by quorum, node join, TPM key rotation under load, node removal, kiosk enrol/freeze/revoke (root, netns, swtpm)
	$(GO) vet -tags provisioning ./firmware/clustertest/
	$(GO) test -tags provisioning -race -count=1 -timeout 12m -run '^TestProvisioningCeremonies$$' -v ./firmware/clustertest/

# --- enginebench ---
# Storage engines on hallmark's commit pattern (bbolt as storage configures
# it, pebble, an append-only log floor, bbolt with time-ordered keys). A
# module of its own so that hallmark does not depend on pebble. Measure
# alone: flock /tmp/hallmark-bench.lock make bench-engines
ENGINEBENCH_FLAGS ?=
.PHONY: bench-engines test-enginebench
bench-engines: ## storage engines on the block-commit pattern: CPU, wall, bytes and fsyncs per tx, lookup, open, size (~4 min)
	cd tools/enginebench && $(GO) run . $(ENGINEBENCH_FLAGS)

test-enginebench: ## enginebench's own tests and vet (its own module)
	cd tools/enginebench && $(GO) vet ./... && $(GO) test -race -count=1 ./...
