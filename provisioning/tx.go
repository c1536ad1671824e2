package provisioning

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// TxOptions are the envelope fields of a ceremony's transaction.
type TxOptions struct {
	ChainID string
	// Time stamps the transaction (zero: now).
	Time time.Time
	// Nonce zero means random.
	Nonce uint64
	Memo  string
	// Sender is the sending account; zero means the account registered
	// with the first signer's key (an account keeps the address of the
	// key it was registered with after a key rotation: pass it then).
	Sender ledger.Address
}

// NewTxBody builds the body of a transaction of body's type, signed by
// signers in that order (the sender's key first). recipient may be nil.
func NewTxBody(o TxOptions, body txs.Body, recipient *ledger.Address, signers ...ledger.PublicKeyBytes) (ledger.TxBody, error) {
	if o.ChainID == "" {
		return ledger.TxBody{}, fmt.Errorf("provisioning: the chain id is required")
	}
	if len(signers) == 0 {
		return ledger.TxBody{}, fmt.Errorf("provisioning: a transaction needs a signer")
	}
	if err := body.Validate(); err != nil {
		return ledger.TxBody{}, err
	}
	data, err := txs.Encode(body)
	if err != nil {
		return ledger.TxBody{}, err
	}
	if o.Time.IsZero() {
		o.Time = time.Now()
	}
	if o.Nonce == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return ledger.TxBody{}, err
		}
		o.Nonce = binary.BigEndian.Uint64(b[:])
	}
	if o.Sender.IsZero() {
		o.Sender = ledger.Address(signers[0].ID())
	}
	seen := map[ledger.PublicKeyBytes]bool{}
	for _, s := range signers {
		if seen[s] {
			return ledger.TxBody{}, fmt.Errorf("provisioning: key %s is listed twice as a signer", s.ID())
		}
		seen[s] = true
	}
	return ledger.TxBody{
		Version: ledger.TxVersion, ChainID: o.ChainID, Type: body.TxType(), Timestamp: o.Time.UnixMilli(), Nonce: o.Nonce,
		Signers: signers, Entity: ledger.Entity{Sender: o.Sender, Recipient: recipient, Data: data, Memo: o.Memo},
	}, nil
}

// NodeAdd is the gov.node-add body for an enrolled node: its identity
// certificate (checked against the organisations' roots at time at, of
// kind node, attested by its TPM unless allowUnattested) and the address
// its peers reach it at.
func NodeAdd(certDER []byte, roots []*gm.Certificate, chainID, address, softwareVersion string, at time.Time, allowUnattested bool) (*txs.NodeAdd, *Identity, error) {
	id, err := VerifyIdentity(certDER, roots, KindNode, ledger.PublicKeyBytes{}, at)
	if err != nil {
		return nil, nil, err
	}
	if id.ChainID != chainID {
		return nil, nil, fmt.Errorf("%w: the certificate is for chain %q, not %q", ErrCertificate, id.ChainID, chainID)
	}
	if !id.Attested && !allowUnattested {
		return nil, nil, fmt.Errorf("%w: the node certificate carries no TPM attestation of its key", ErrCertificate)
	}
	if softwareVersion == "" {
		softwareVersion = "unknown"
	}
	b := &txs.NodeAdd{Peer: ledger.PeerConfig{
		ProtocolVersion: ledger.ProtocolVersion, SoftwareVersion: softwareVersion, PeerID: id.Key.ID(),
		Address: address, PublicKey: id.Key, Organisation: id.Organisation,
	}, Certificate: certDER}
	if err := b.Validate(); err != nil {
		return nil, nil, err
	}
	return b, id, nil
}

// KioskRegistration is the account.register body for a kiosk's key with
// its certificate (checked against the roots at time at, of kind kiosk):
// the kiosk role, under the certificate's organisation.
func KioskRegistration(certDER []byte, roots []*gm.Certificate, chainID string, at time.Time) (*txs.AccountRegister, *Identity, error) {
	id, err := VerifyIdentity(certDER, roots, KindKiosk, ledger.PublicKeyBytes{}, at)
	if err != nil {
		return nil, nil, err
	}
	if id.ChainID != chainID {
		return nil, nil, fmt.Errorf("%w: the certificate is for chain %q, not %q", ErrCertificate, id.ChainID, chainID)
	}
	b := &txs.AccountRegister{PublicKey: id.Key, Institution: id.Organisation, Certificate: certDER, Roles: ledger.RoleKiosk}
	if err := b.Validate(); err != nil {
		return nil, nil, err
	}
	return b, id, nil
}

// RevocationReason is the reason a certificate revocation records on the
// chain (an account.freeze of the certificate's account): the
// certificate's serial and the stated cause, so that an auditor can tell
// a revocation from any other freeze.
func RevocationReason(serial fmt.Stringer, cause string) string {
	return fmt.Sprintf("certificate %s revoked: %s", serial, cause)
}
