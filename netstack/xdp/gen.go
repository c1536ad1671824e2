package xdp

// The BPF object and its Go bindings are generated and committed, so that
// building needs no clang. `make generate` (or `go generate ./netstack/xdp`)
// rebuilds them; TestGeneratedObjectIsCurrent checks that they match the C
// source when clang is present.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -tags linux -type config -type bucket -type addr -type verdict filter filter.c
