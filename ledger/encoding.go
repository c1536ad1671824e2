package ledger

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// ErrNonCanonical is returned for input that decodes but is not the
// canonical encoding of what it decodes to.
var ErrNonCanonical = errors.New("ledger: non-canonical encoding")

// ErrDecode wraps every decoding failure.
var ErrDecode = errors.New("ledger: malformed encoding")

// codec holds the immutable CBOR modes. The modes are built once and never
// change, so sharing them is safe.
type codec struct {
	enc cbor.EncMode
	dec cbor.DecMode
}

// canonical is the one codec the package uses.
var canonical = newCodec()

func newCodec() codec {
	opts := cbor.CoreDetEncOptions()
	// A nil slice or map encodes as an empty one, so "none" has one
	// encoding; a CBOR null where a list is expected is then non-canonical.
	opts.NilContainers = cbor.NilContainerAsEmpty
	enc, err := opts.EncMode()
	if err != nil {
		panic(fmt.Sprintf("ledger: building CBOR encoder: %v", err))
	}
	dec, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   16,
		MaxArrayElements:  MaxBlockTxs,
		MaxMapPairs:       1024,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("ledger: building CBOR decoder: %v", err))
	}
	return codec{enc: enc, dec: dec}
}

// Marshal returns the canonical encoding of v.
func Marshal(v any) ([]byte, error) {
	b, err := canonical.enc.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode %T: %w", v, err)
	}
	return b, nil
}

// mustMarshal encodes values whose types cannot fail to encode (fixed
// structs of byte strings, integers and text).
func mustMarshal(v any) []byte {
	b, err := Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Unmarshal decodes data into v and accepts it only if it is the canonical
// encoding of the result: no other byte string decodes successfully. The
// caller checks semantic limits (versions, sizes) afterwards.
func Unmarshal(data []byte, v any) error {
	if err := canonical.dec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrDecode, v, err)
	}
	again, err := canonical.enc.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %T: re-encode: %v", ErrDecode, v, err)
	}
	if !bytes.Equal(again, data) {
		return fmt.Errorf("%w: %T", ErrNonCanonical, v)
	}
	return nil
}
