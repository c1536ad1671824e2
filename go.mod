module hallmark

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/emmansun/gmsm v0.44.0
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/google/go-tpm v0.9.8
	github.com/klauspost/reedsolomon v1.14.2
	github.com/miekg/pkcs11 v1.1.2
	github.com/quic-go/quic-go v0.65.0
	github.com/spf13/cobra v1.10.2
	github.com/tjfoc/gmsm v1.4.1
	go.etcd.io/bbolt v1.5.0
	golang.org/x/crypto v0.58.0
	golang.org/x/net v0.60.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/klauspost/cpuid/v2 v2.3.0 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
	github.com/x448/float16 v0.8.4 // indirect
)

tool github.com/cilium/ebpf/cmd/bpf2go
