package tpm

import (
	"context"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// LeakTransientsForTest loads n storage root keys and does not flush them,
// as a crashed predecessor would leave them.
func LeakTransientsForTest(ctx context.Context, c *Conn, n int) error {
	return c.DoOnce(ctx, func(t transport.TPM) error {
		for i := 0; i < n; i++ {
			if _, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(srkTemplate())}).Execute(t); err != nil {
				return err
			}
		}
		return nil
	})
}
