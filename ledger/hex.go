package ledger

import (
	"encoding/hex"
	"fmt"
)

func hexText(b []byte) []byte {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out
}

func unhexFixed(dst, text []byte, what string) error {
	if hex.DecodedLen(len(text)) != len(dst) {
		return fmt.Errorf("ledger: %s must be %d hex characters, got %d", what, 2*len(dst), len(text))
	}
	if _, err := hex.Decode(dst, text); err != nil {
		return fmt.Errorf("ledger: %s: %w", what, err)
	}
	return nil
}
