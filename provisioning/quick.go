package provisioning

import (
	"context"
	"fmt"
	"time"

	"hallmark/gm"
	"hallmark/ledger/app"
)

// QuickOptions describe a genesis made in one step.
type QuickOptions struct {
	// CAKey signs one root CA certificate for every organisation the
	// validators name.
	CAKey gm.Signer
	// Attestations of validator keys, by key id (from Attest); validators
	// without one are listed without evidence.
	Attestations map[gm.KeyID]*Attestation
	// Admins approve the genesis; each must be an administrator account
	// of the document.
	Admins []gm.Signer
}

// QuickGenesis turns a genesis document into an approved genesis file in
// one step, the way a development consortium, the local devnet and tests
// need it: one process plays every founding administrator and every
// organisation's CA. A real consortium runs the ceremony step by step
// (hallmarkctl genesis, docs/OPERATIONS.md), each party with its own keys.
func QuickGenesis(ctx context.Context, doc *app.GenesisDoc, o QuickOptions) (*GenesisFile, error) {
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrGenesis, err)
	}
	g := &GenesisFile{Version: GenesisFileVersion, Body: GenesisBody{Doc: *doc}}
	at := time.UnixMilli(doc.Time)
	seen := map[string]bool{}
	for _, v := range doc.Validators {
		if seen[v.Organisation] {
			continue
		}
		seen[v.Organisation] = true
		ca, err := NewRootCA(ctx, o.CAKey, v.Organisation, at.Add(-time.Hour), at.AddDate(10, 0, 0))
		if err != nil {
			return nil, err
		}
		g.Body.Organisations = append(g.Body.Organisations, Organisation{Name: v.Organisation, RootCA: ca.Raw()})
	}
	for _, v := range doc.Validators {
		if a := o.Attestations[v.PeerID]; a != nil {
			g.Body.Validators = append(g.Body.Validators, ValidatorEvidence{PeerID: v.PeerID, Attestation: a})
		}
	}
	if err := g.Check(CheckOptions{}); err != nil {
		return nil, err
	}
	for _, a := range o.Admins {
		if err := g.Sign(ctx, a, CheckOptions{}); err != nil {
			return nil, err
		}
	}
	if _, err := g.Verify(CheckOptions{}); err != nil {
		return nil, err
	}
	return g, nil
}
