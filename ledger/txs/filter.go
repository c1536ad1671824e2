package txs

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"hallmark/ledger"
)

// Limits of a filter rule set.
const (
	MaxBlockedSenders = 1000
	MaxBlockedTypes   = 200
	MaxKeywords       = 500
	MaxKeywordLen     = 64
)

// FilterRules is the content-filter rule set (内容过滤). It is chain state,
// set at genesis and replaced by governance, so that every node — the one
// admitting a transaction, the leader building a block and every voter —
// applies the same rules and reaches the same verdict.
type FilterRules struct {
	// BlockedSenders lists accounts whose transactions are refused,
	// ascending without repeats. Governance transactions are exempt, so
	// that a rule set can always be repaired.
	BlockedSenders []ledger.Address `cbor:"1,keyasint,omitempty" json:"blockedSenders,omitempty"`
	// BlockedRecordTypes lists record types (and certificate kinds) that
	// may not be stored, ascending without repeats.
	BlockedRecordTypes []string `cbor:"2,keyasint,omitempty" json:"blockedRecordTypes,omitempty"`
	// Keywords are searched for in every plaintext field of a transaction
	// (memo and the body's text fields) and in plaintext payloads. They
	// match case-insensitively for ASCII letters and byte for byte
	// otherwise; they are stored without upper-case ASCII letters,
	// ascending without repeats.
	Keywords []string `cbor:"3,keyasint,omitempty" json:"keywords,omitempty"`
	// Size limits; zero means only the data format's own limit applies.
	MaxDataBytes    uint32 `cbor:"4,keyasint,omitempty" json:"maxDataBytes,omitempty"`
	MaxMemoBytes    uint32 `cbor:"5,keyasint,omitempty" json:"maxMemoBytes,omitempty"`
	MaxPayloadBytes uint32 `cbor:"6,keyasint,omitempty" json:"maxPayloadBytes,omitempty"`
	// RequireRegulatorReader refuses encrypted payloads that do not list
	// an account with the regulator role among their readers, so that the
	// regulator can always inspect plaintext (提供明文信息来进行检查).
	RequireRegulatorReader bool `cbor:"7,keyasint,omitempty" json:"requireRegulatorReader,omitempty"`
}

// Validate checks limits and the canonical order of the lists.
func (r *FilterRules) Validate() error {
	if err := checkAddressSet("blocked sender", r.BlockedSenders, 0, MaxBlockedSenders); err != nil {
		return err
	}
	if len(r.BlockedRecordTypes) > MaxBlockedTypes {
		return bad("%d blocked record types exceed %d", len(r.BlockedRecordTypes), MaxBlockedTypes)
	}
	for i, t := range r.BlockedRecordTypes {
		if !ValidRecordType(t) {
			return bad("blocked record type %q is not a record type", t)
		}
		if i > 0 && r.BlockedRecordTypes[i-1] >= t {
			return bad("blocked record types must be in ascending order without repeats")
		}
	}
	if len(r.Keywords) > MaxKeywords {
		return bad("%d keywords exceed %d", len(r.Keywords), MaxKeywords)
	}
	for i, k := range r.Keywords {
		if len(k) == 0 || len(k) > MaxKeywordLen || !utf8.ValidString(k) {
			return bad("keyword %d must be UTF-8 of 1 to %d bytes", i, MaxKeywordLen)
		}
		if k != foldASCII(k) {
			return bad("keyword %q has upper-case ASCII letters; store it in lower case", k)
		}
		if i > 0 && r.Keywords[i-1] >= k {
			return bad("keywords must be in ascending order without repeats")
		}
	}
	if r.MaxDataBytes > ledger.MaxDataBytes || r.MaxMemoBytes > ledger.MaxMemoBytes || r.MaxPayloadBytes > ledger.MaxPayloadBytes {
		return bad("a size limit exceeds the data format's own limit")
	}
	return nil
}

// SenderBlocked reports whether a is on the blocked list.
func (r *FilterRules) SenderBlocked(a ledger.Address) bool {
	lo, hi := 0, len(r.BlockedSenders)
	for lo < hi {
		m := (lo + hi) / 2
		switch c := bytes.Compare(r.BlockedSenders[m][:], a[:]); {
		case c == 0:
			return true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

// RecordTypeBlocked reports whether record type t is on the blocked list.
func (r *FilterRules) RecordTypeBlocked(t string) bool {
	lo, hi := 0, len(r.BlockedRecordTypes)
	for lo < hi {
		m := (lo + hi) / 2
		switch s := r.BlockedRecordTypes[m]; {
		case s == t:
			return true
		case s < t:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

// MatchText returns the first keyword found in s, or "".
func (r *FilterRules) MatchText(s string) string {
	if len(r.Keywords) == 0 || s == "" {
		return ""
	}
	folded := foldASCII(s)
	for _, k := range r.Keywords {
		if strings.Contains(folded, k) {
			return k
		}
	}
	return ""
}

// MatchBytes returns the first keyword found in b, or "".
func (r *FilterRules) MatchBytes(b []byte) string {
	if len(r.Keywords) == 0 || len(b) == 0 {
		return ""
	}
	// Byte-wise folding equals rune-wise ASCII folding on UTF-8 (ASCII
	// bytes never occur inside a multi-byte sequence) and keeps binary
	// payloads intact.
	folded := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		folded[i] = c
	}
	for _, k := range r.Keywords {
		if bytes.Contains(folded, []byte(k)) {
			return k
		}
	}
	return ""
}

// foldASCII lower-cases ASCII letters only. Unicode case folding is left
// out on purpose: its tables change between Go versions, and the filter's
// verdict is part of consensus.
func foldASCII(s string) string { return strings.Map(foldRune, s) }

func foldRune(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}
