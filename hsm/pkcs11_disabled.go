//go:build !pkcs11 || !cgo

package hsm

import (
	"context"
	"fmt"

	"hallmark/gm"
)

// PKCS11Available reports whether this binary was built with PKCS#11
// support (build tag pkcs11, cgo enabled).
const PKCS11Available = false

func errNoPKCS11(r Ref) error {
	return fmt.Errorf("hsm: %s: %w", r.String(), ErrPKCS11Unavailable)
}

func openPKCS11(_ context.Context, r Ref, _ *Options) (Signer, error) { return nil, errNoPKCS11(r) }

func generatePKCS11(_ context.Context, r Ref, _ *Options) (Signer, error) {
	return nil, errNoPKCS11(r)
}

func destroyPKCS11(_ context.Context, r Ref, _ *Options) (*gm.PublicKey, error) {
	return nil, errNoPKCS11(r)
}
