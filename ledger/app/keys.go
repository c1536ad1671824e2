package app

import (
	"encoding/binary"

	"hallmark/gm"
	"hallmark/ledger"
)

// World-state layout. Keys are an ASCII tag and '/' followed by fixed-size
// binary fields (addresses, digests and key ids are 32 bytes; times and
// heights are 8-byte big-endian), so that a prefix names a range and scans
// come out in a useful order. Values are canonical CBOR unless noted.
// docs/TRANSACTIONS.md lists the layout.
const (
	keyChain      = "m/chain"      // chain id, UTF-8
	keyParams     = "m/params"     // ledger.Params
	keyValidators = "m/validators" // ledger.ValidatorSet after every committed change
	keyFilter     = "m/filter"     // txs.FilterRules
	keyProtocol   = "m/protocol"   // ProtocolState
	keyTip        = "m/tip"        // Tip
	keyHorizon    = "m/horizon"    // 8 bytes: replay horizon, ms
	keyAdmins     = "m/admins"     // 4 bytes: number of accounts with the admin role

	prefixAccount  = "a/" // a/<address> → ledger.Account
	prefixKey      = "k/" // k/<key id> → address (32 bytes) whose current key it is
	prefixRecord   = "r/" // r/<record id> → Record
	prefixSubject  = "s/" // s/<subject><record id> → 0x01
	prefixErased   = "e/" // e/<payload digest> → Erasure
	prefixCert     = "c/" // c/<certificate id> → Certificate
	prefixCertDoc  = "d/" // d/<document digest> → certificate id (32 bytes)
	prefixGrant    = "g/" // g/<subject><grantee><class> → Grant
	prefixGrantee  = "h/" // h/<grantee><subject><class> → 0x01
	prefixAsset    = "t/" // t/<symbol> → Asset
	prefixBalance  = "b/" // b/<symbol>0x00<address> → 8 bytes; absent means zero
	prefixSeen     = "x/" // x/<tx timestamp><tx id> → 8 bytes: height that executed it
	prefixProposal = "p/" // p/<proposal id> → Proposal
	prefixExpiry   = "q/" // q/<expiry><proposal id> → 0x01
	prefixNode     = "n/" // n/<peer id> → NodeInfo
	prefixAnchor   = "u/" // u/<log id> → AnchorState
)

var present = []byte{1}

func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func be64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func accountKey(a ledger.Address) []byte { return cat([]byte(prefixAccount), a[:]) }
func keyIndexKey(id gm.KeyID) []byte     { return cat([]byte(prefixKey), id[:]) }
func recordKey(id gm.Digest) []byte      { return cat([]byte(prefixRecord), id[:]) }
func subjectKey(s ledger.Address, id gm.Digest) []byte {
	return cat([]byte(prefixSubject), s[:], id[:])
}
func erasedKey(d gm.Digest) []byte  { return cat([]byte(prefixErased), d[:]) }
func certKey(id gm.Digest) []byte   { return cat([]byte(prefixCert), id[:]) }
func certDocKey(d gm.Digest) []byte { return cat([]byte(prefixCertDoc), d[:]) }
func assetKey(symbol string) []byte { return cat([]byte(prefixAsset), []byte(symbol)) }
func balancePrefix(symbol string) []byte {
	return cat([]byte(prefixBalance), []byte(symbol), []byte{0})
}
func balanceKey(symbol string, a ledger.Address) []byte { return cat(balancePrefix(symbol), a[:]) }
func grantKey(subject, grantee ledger.Address, class string) []byte {
	return cat([]byte(prefixGrant), subject[:], grantee[:], []byte(class))
}
func granteeKey(grantee, subject ledger.Address, class string) []byte {
	return cat([]byte(prefixGrantee), grantee[:], subject[:], []byte(class))
}
func seenKey(ts int64, id ledger.TxID) []byte {
	return cat([]byte(prefixSeen), be64(uint64(ts)), id[:])
}
func proposalKey(id gm.Digest) []byte { return cat([]byte(prefixProposal), id[:]) }
func expiryKey(at int64, id gm.Digest) []byte {
	return cat([]byte(prefixExpiry), be64(uint64(at)), id[:])
}
func nodeKey(id gm.KeyID) []byte   { return cat([]byte(prefixNode), id[:]) }
func anchorKey(id gm.KeyID) []byte { return cat([]byte(prefixAnchor), id[:]) }
