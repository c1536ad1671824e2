package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"unicode/utf8"

	"hallmark/gm"
)

// Errors a transaction's structural checks return.
var (
	ErrUnknownVersion = errors.New("ledger: unknown format version")
	ErrTooLarge       = errors.New("ledger: field exceeds its limit")
	ErrSignature      = errors.New("ledger: bad signature")
	ErrMalformed      = errors.New("ledger: malformed object")
)

// txSignDomain separates transaction signatures from every other SM2
// signature a key might make (votes, receipts, certificates).
const txSignDomain = "hallmark/tx/v1\x00"

// Entity is the spec's entity object (04): the attributes of one
// transaction.
type Entity struct {
	Sender    Address  `cbor:"1,keyasint" json:"sender"`              // 04_001
	Recipient *Address `cbor:"2,keyasint,omitempty" json:"recipient"` // 04_002, optional
	Data      []byte   `cbor:"3,keyasint,omitempty" json:"data"`      // 04_003, the type's CBOR body
	Memo      string   `cbor:"4,keyasint,omitempty" json:"memo"`      // 04_004, UTF-8
}

// TxBody is the signed part of a transaction. Its canonical encoding is
// what the transaction id (03_001) is computed over.
type TxBody struct {
	Version   uint16 `cbor:"1,keyasint" json:"version"`
	ChainID   string `cbor:"2,keyasint" json:"chainId"`
	Type      TxType `cbor:"3,keyasint" json:"transactionType"` // 03_002
	Timestamp int64  `cbor:"4,keyasint" json:"timestamp"`       // 03_004, ms since 1970 UTC
	// Nonce makes otherwise identical transactions distinct; replays are
	// refused by id, so any value the sender has not used before works.
	Nonce   uint64           `cbor:"5,keyasint" json:"nonce"`
	Signers []PublicKeyBytes `cbor:"6,keyasint" json:"signer"` // 03_003
	Entity  Entity           `cbor:"7,keyasint" json:"entity"` // 04
	// PayloadDigest names a content-addressed payload by its SM3 digest.
	// The payload travels beside the transaction and is stored apart from
	// the block, so a regulator can erase it without breaking any hash.
	PayloadDigest *gm.Digest `cbor:"8,keyasint,omitempty" json:"payloadDigest,omitempty"`
}

// TxID is a transaction id (03_001): SM3 of the canonical body.
type TxID = gm.Digest

// Transaction is a signed transaction as blocks carry it. Signatures[i] is
// Signers[i]'s signature over [TxID.SignBytes]. Payload, when present,
// hashes to Body.PayloadDigest; blocks are stored without payloads.
type Transaction struct {
	Body       TxBody         `cbor:"1,keyasint" json:"body"`
	Signatures []gm.Signature `cbor:"2,keyasint" json:"signatures"`
	Payload    []byte         `cbor:"3,keyasint,omitempty" json:"payload,omitempty"`

	// memo remembers the id of the body as it was when the transaction was
	// decoded or signed, so the hot paths that ask for the id many times
	// per transaction (admission, proposals, execution, storage) do not
	// re-encode and re-hash the body each time. It holds its own deep copy
	// of that body: if anyone changes Body afterwards, the copy no longer
	// matches and ID recomputes. It is set only before the transaction is
	// shared, so reading it needs no lock.
	memo *txMemo
}

type txMemo struct {
	body TxBody
	id   TxID
	// keys are the body's signers parsed (nil if one does not parse), so
	// that Validate and VerifySignatures, which run several times per
	// transaction on a node, do not check the points again.
	keys []*gm.PublicKey
	// signed is SignedDigest, computed on first use (by whichever
	// goroutine asks first; they compute the same value) with the
	// signatures it covers.
	signed atomic.Pointer[signedMemo]
}

type signedMemo struct {
	sigs   []gm.Signature
	digest gm.Digest
}

// SignedDigest returns SM3(id ‖ signature_1 ‖ … ‖ signature_n), which names
// the transaction with exactly these signatures: the id covers the body
// only, and a relay could alter a signature. The node's verified-signature
// cache is keyed by it and asks for it several times per transaction, so
// a decoded or signed transaction remembers it (for the signatures it
// then has; after any change to body or signatures it is computed again).
func (tx *Transaction) SignedDigest() gm.Digest {
	m := tx.memo
	if m == nil || !m.body.equal(&tx.Body) {
		return signedDigest(tx.Body.ID(), tx.Signatures)
	}
	if sm := m.signed.Load(); sm != nil && slices.Equal(sm.sigs, tx.Signatures) {
		return sm.digest
	}
	d := signedDigest(m.id, tx.Signatures)
	m.signed.Store(&signedMemo{sigs: slices.Clone(tx.Signatures), digest: d})
	return d
}

func signedDigest(id TxID, sigs []gm.Signature) gm.Digest {
	msg := make([]byte, 0, len(id)+len(sigs)*gm.SignatureSize)
	msg = append(msg, id[:]...)
	for i := range sigs {
		msg = append(msg, sigs[i][:]...)
	}
	return gm.SM3(msg)
}

// ID returns the transaction id: SM3 over the canonical encoding of the body.
func (tx *Transaction) ID() TxID {
	if m := tx.memo; m != nil && m.body.equal(&tx.Body) {
		return m.id
	}
	return tx.Body.ID()
}

// signerKeys returns the remembered parsed signers if the body is still
// the one they were parsed from.
func (tx *Transaction) signerKeys() []*gm.PublicKey {
	if m := tx.memo; m != nil && m.keys != nil && m.body.equal(&tx.Body) {
		return m.keys
	}
	return nil
}

// remember computes the id once and keeps it with a private copy of the
// body it was computed from, and the parsed signer keys.
func (tx *Transaction) remember() { tx.rememberWith(nil) }

// parsedKeys shares parsed signer keys between the transactions of one
// batch: a block's transactions mostly come from a few kiosks, and a
// *gm.PublicKey is immutable, so they can all point at one parse.
type parsedKeys map[PublicKeyBytes]*gm.PublicKey

// rememberWith is remember, looking keys up in (and adding them to) known
// when it is not nil.
func (tx *Transaction) rememberWith(known parsedKeys) { tx.rememberID(tx.Body.ID(), known) }

// rememberID is rememberWith for a caller that knows the body's id.
func (tx *Transaction) rememberID(id TxID, known parsedKeys) {
	m := &txMemo{body: tx.Body.clone(), id: id}
	keys := make([]*gm.PublicKey, len(m.body.Signers))
	for i, s := range m.body.Signers {
		if k := known[s]; k != nil {
			keys[i] = k
			continue
		}
		k, err := s.Parse()
		if err != nil {
			keys = nil
			break
		}
		keys[i] = k
		if known != nil {
			known[s] = k
		}
	}
	m.keys = keys
	tx.memo = m
}

// RememberIDs does for transactions decoded inside a larger structure
// (a block in a consensus message, say) what DecodeTx and DecodeBlock do:
// it computes each id once and remembers it, so that the many later calls
// to ID do not re-encode and re-hash the body. Signer keys that several
// of the transactions share are parsed once. Call it before the
// transactions are shared with other goroutines.
func RememberIDs(txs []Transaction) {
	known := parsedKeys{}
	for i := range txs {
		if txs[i].memo == nil {
			txs[i].rememberWith(known)
		}
	}
}

// ForgetIDs returns copies of txs that share their contents but not what
// was remembered about them (ids, parsed signer keys): for holding
// transactions long after the hot paths are done with them, in less
// memory. The copies compute their id again when asked.
func ForgetIDs(txs []Transaction) []Transaction {
	out := make([]Transaction, len(txs))
	for i := range txs {
		out[i] = txs[i]
		out[i].memo = nil
	}
	return out
}

// clone returns a copy of b that shares no memory with it.
func (b *TxBody) clone() TxBody {
	c := *b
	c.Signers = append([]PublicKeyBytes(nil), b.Signers...)
	c.Entity.Data = append([]byte(nil), b.Entity.Data...)
	if b.Entity.Recipient != nil {
		r := *b.Entity.Recipient
		c.Entity.Recipient = &r
	}
	if b.PayloadDigest != nil {
		d := *b.PayloadDigest
		c.PayloadDigest = &d
	}
	return c
}

// equal reports whether b and o encode identically.
func (b *TxBody) equal(o *TxBody) bool {
	if b.Version != o.Version || b.ChainID != o.ChainID || b.Type != o.Type ||
		b.Timestamp != o.Timestamp || b.Nonce != o.Nonce || len(b.Signers) != len(o.Signers) ||
		b.Entity.Sender != o.Entity.Sender || b.Entity.Memo != o.Entity.Memo ||
		!bytes.Equal(b.Entity.Data, o.Entity.Data) ||
		!equalPtr(b.Entity.Recipient, o.Entity.Recipient) || !equalPtr(b.PayloadDigest, o.PayloadDigest) {
		return false
	}
	for i := range b.Signers {
		if b.Signers[i] != o.Signers[i] {
			return false
		}
	}
	return true
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// ID returns SM3 over the canonical encoding of the body.
func (b *TxBody) ID() TxID {
	return gm.SM3(appendTxBody(make([]byte, 0, txBodySize(b)), b))
}

// SignBytes returns the message a signer signs for the transaction with
// this id: a domain tag followed by the id.
func SignBytes(id TxID) []byte {
	msg := make([]byte, 0, len(txSignDomain)+gm.DigestSize)
	msg = append(msg, txSignDomain...)
	return append(msg, id[:]...)
}

// Sign appends signer's signature. The signer's public key must already be
// listed in Body.Signers, at the position of the signature it adds.
func (tx *Transaction) Sign(ctx context.Context, signer gm.Signer) error {
	i := len(tx.Signatures)
	if i >= len(tx.Body.Signers) {
		return fmt.Errorf("%w: all %d signers have signed", ErrSignature, len(tx.Body.Signers))
	}
	if KeyBytes(signer.PublicKey()) != tx.Body.Signers[i] {
		return fmt.Errorf("%w: signer %d is %s, not the key offered", ErrSignature, i, tx.Body.Signers[i].ID())
	}
	sig, err := signer.Sign(ctx, SignBytes(tx.ID()))
	if err != nil {
		return fmt.Errorf("ledger: signing transaction: %w", err)
	}
	tx.Signatures = append(tx.Signatures, sig)
	tx.remember()
	return nil
}

// Validate checks structure and limits: version, sizes, signer count, that
// signer keys are curve points, and that a payload matches its digest. It
// does not verify signatures ([Transaction.VerifySignatures]) or consult
// state.
func (tx *Transaction) Validate() error {
	b := &tx.Body
	if b.Version != TxVersion {
		return fmt.Errorf("%w: transaction version %d", ErrUnknownVersion, b.Version)
	}
	if len(b.ChainID) == 0 || len(b.ChainID) > MaxChainIDLen {
		return fmt.Errorf("%w: chain id must be 1 to %d bytes", ErrTooLarge, MaxChainIDLen)
	}
	if !b.Type.Known() {
		return fmt.Errorf("%w: unknown transaction type 0x%04x", ErrMalformed, uint16(b.Type))
	}
	if b.Timestamp <= 0 {
		return fmt.Errorf("%w: timestamp must be positive milliseconds", ErrMalformed)
	}
	if len(b.Signers) == 0 || len(b.Signers) > MaxSigners {
		return fmt.Errorf("%w: %d signers, want 1 to %d", ErrTooLarge, len(b.Signers), MaxSigners)
	}
	parsed := tx.signerKeys() != nil
	seen := make(map[PublicKeyBytes]struct{}, len(b.Signers))
	for i, s := range b.Signers {
		if !parsed {
			if _, err := s.Parse(); err != nil {
				return fmt.Errorf("%w: signer %d: %v", ErrMalformed, i, err)
			}
		}
		if _, dup := seen[s]; dup {
			return fmt.Errorf("%w: signer %d listed twice", ErrMalformed, i)
		}
		seen[s] = struct{}{}
	}
	if len(tx.Signatures) != len(b.Signers) {
		return fmt.Errorf("%w: %d signatures for %d signers", ErrSignature, len(tx.Signatures), len(b.Signers))
	}
	if b.Entity.Sender.IsZero() {
		return fmt.Errorf("%w: sender is empty", ErrMalformed)
	}
	if len(b.Entity.Data) > MaxDataBytes {
		return fmt.Errorf("%w: data of %d bytes exceeds %d", ErrTooLarge, len(b.Entity.Data), MaxDataBytes)
	}
	if len(b.Entity.Memo) > MaxMemoBytes || !utf8.ValidString(b.Entity.Memo) {
		return fmt.Errorf("%w: memo must be UTF-8 of at most %d bytes", ErrTooLarge, MaxMemoBytes)
	}
	if len(tx.Payload) > MaxPayloadBytes {
		return fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrTooLarge, len(tx.Payload), MaxPayloadBytes)
	}
	if tx.Payload != nil {
		if b.PayloadDigest == nil {
			return fmt.Errorf("%w: payload present but no payload digest", ErrMalformed)
		}
		if gm.SM3(tx.Payload) != *b.PayloadDigest {
			return fmt.Errorf("%w: payload does not match its digest", ErrMalformed)
		}
	}
	return nil
}

// VerifySignatures checks every signature against its signer. It costs one
// SM2 verification per signer; callers remember the outcome by id.
func (tx *Transaction) VerifySignatures() error {
	if len(tx.Signatures) != len(tx.Body.Signers) {
		return fmt.Errorf("%w: %d signatures for %d signers", ErrSignature, len(tx.Signatures), len(tx.Body.Signers))
	}
	msg := SignBytes(tx.ID())
	keys := tx.signerKeys()
	for i, s := range tx.Body.Signers {
		var key *gm.PublicKey
		if keys != nil {
			key = keys[i]
		} else {
			var err error
			if key, err = s.Parse(); err != nil {
				return fmt.Errorf("%w: signer %d: %v", ErrSignature, i, err)
			}
		}
		if !key.Verify(msg, tx.Signatures[i]) {
			return fmt.Errorf("%w: signature %d does not verify under %s", ErrSignature, i, key.ID())
		}
	}
	return nil
}

// WithoutPayload returns a shallow copy with the payload removed: the form
// stored in block bodies.
func (tx *Transaction) WithoutPayload() Transaction {
	c := *tx
	c.Payload = nil
	return c
}

// EncodeTx returns the canonical encoding, payload included if present.
func EncodeTx(tx *Transaction) ([]byte, error) {
	return appendTx(make([]byte, 0, txSize(tx, true)), tx, true), nil
}

// DecodeTx strictly decodes and validates a transaction. It does not
// verify signatures.
func DecodeTx(b []byte) (*Transaction, error) { return decodeTx(b, nil) }

// TxDecoder decodes transactions as DecodeTx does, parsing a signer key
// that several of them share once (a batch of transactions mostly comes
// from a few kiosks). The transactions share the parsed keys, which are
// immutable. A TxDecoder remembers every distinct key it parsed, so use
// one per batch; it is not safe for concurrent use.
type TxDecoder struct{ keys parsedKeys }

// Decode is DecodeTx.
func (d *TxDecoder) Decode(b []byte) (*Transaction, error) {
	if d.keys == nil {
		d.keys = parsedKeys{}
	}
	return decodeTx(b, d.keys)
}

func decodeTx(b []byte, known parsedKeys) (*Transaction, error) {
	if len(b) > MaxTxBytes+MaxPayloadBytes+16 {
		return nil, fmt.Errorf("%w: transaction of %d bytes", ErrTooLarge, len(b))
	}
	var tx Transaction
	bodyEnd, ok := parseTx(b, &tx)
	if !ok {
		// Not laid out as parseTx expects: the generic decoder says why
		// (or accepts what parseTx is too narrow for), and Unmarshal's
		// canonical check follows, with the encoder that also tells where
		// the body is.
		if err := canonical.dec.Unmarshal(b, (*txFields)(&tx)); err != nil {
			return nil, fmt.Errorf("%w: %T: %v", ErrDecode, &tx, err)
		}
		var again []byte
		again, bodyEnd = appendTxBounds(make([]byte, 0, txSize(&tx, true)), &tx)
		if !bytes.Equal(again, b) {
			return nil, fmt.Errorf("%w: %T", ErrNonCanonical, &tx)
		}
	}
	// The id is SM3 of the body's canonical bytes, which are b's own.
	if n := len(b) - len(tx.Payload); n > MaxTxBytes {
		return nil, fmt.Errorf("%w: transaction of %d bytes without payload exceeds %d", ErrTooLarge, n, MaxTxBytes)
	}
	// First, so that Validate uses the parsed signers.
	tx.rememberID(gm.SM3(b[txBodyStart:bodyEnd]), known)
	if err := tx.Validate(); err != nil {
		return nil, err
	}
	return &tx, nil
}
