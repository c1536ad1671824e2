package hsm

import (
	"context"
	"fmt"
	"log/slog"

	"hallmark/gm"
	"hallmark/hsm/audit"
	"hallmark/hsm/devkeys"
	"hallmark/hsm/tpm"
)

// Options configure how keys are reached and what lifecycle operations
// record. The zero value reaches the TPM at /dev/tpmrm0, records nothing
// and is not production.
type Options struct {
	// TPM says how to reach the TPM when TPMConn is nil.
	TPM tpm.Config
	// TPMConn is an open connection to share between signers (and the
	// NV counter). A TPM without a resource manager, such as swtpm, serves
	// one connection at a time, so a process using several TPM keys must
	// share one. When nil, each signer dials its own and closes it.
	TPMConn *tpm.Conn
	// Passphrase unlocks (and, on Generate, protects) dev keys.
	Passphrase []byte
	// PIN logs in to a PKCS#11 token; it overrides the reference's
	// pin-source.
	PIN []byte
	// Production marks a node configured for production: the development
	// keystore refuses to open or create keys.
	Production bool
	// DevKDF is the Argon2id cost for new dev key files; zero means
	// devkeys.DefaultParams.
	DevKDF devkeys.Params
	// Audit, when set, receives one entry per lifecycle operation
	// (generate, show, rotate, destroy, list), failures included.
	Audit *audit.Log
	// Actor names who performs lifecycle operations, for the audit log.
	Actor string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// conn returns the shared TPM connection or dials one that the caller
// owns (and closes).
func (o *Options) conn(ctx context.Context) (c *tpm.Conn, owned bool, err error) {
	if o.TPMConn != nil {
		return o.TPMConn, false, nil
	}
	cfg := o.TPM
	if cfg.Logger == nil {
		cfg.Logger = o.Logger
	}
	c, err = tpm.Dial(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("hsm: %w", err)
	}
	return c, true, nil
}

func (o *Options) devKDF() devkeys.Params {
	if o.DevKDF == (devkeys.Params{}) {
		return devkeys.DefaultParams()
	}
	return o.DevKDF
}

// record appends a lifecycle event to the audit log, if one is set. An
// audit failure is returned so that an operation is never reported done
// without its record.
func (o *Options) record(op string, ref string, kind Kind, key *gm.PublicKey, opErr error, detail map[string]string) error {
	if o.Audit == nil {
		return nil
	}
	actor := o.Actor
	if actor == "" {
		actor = "unknown"
	}
	ev := audit.Event{Op: op, Actor: actor, Ref: ref, Custody: string(kind), Err: opErr, Detail: detail}
	if key != nil {
		ev.KeyID = key.ID().String()
	}
	if _, err := o.Audit.Append(ev); err != nil {
		return fmt.Errorf("hsm: recording %s in the audit log: %w", op, err)
	}
	return nil
}
