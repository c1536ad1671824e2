module hallmark

go 1.26.0

require (
	github.com/emmansun/gmsm v0.44.0
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/google/go-tpm v0.9.8
	github.com/miekg/pkcs11 v1.1.2
	github.com/spf13/cobra v1.10.2
	github.com/tjfoc/gmsm v1.4.1
	golang.org/x/crypto v0.58.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
