package peer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"hallmark/ledger/ledgertest"
)

// TestVerifyBinding checks that each kind of bad certificate is refused
// for its own reason, not by accident.
func TestVerifyBinding(t *testing.T) {
	ctx := context.Background()
	member, outsider := ledgertest.Key(t), ledgertest.Key(t)
	now := time.Now()
	good, err := newCertificate(ctx, testChain, member.PublicKey(), member.Sign, now.Add(-time.Minute), now.Add(time.Hour))
	must(t, err)
	id, err := verifyBinding(good.Certificate, testChain, now)
	must(t, err)
	if !id.Equal(member.PublicKey()) {
		t.Fatal("binding names another identity")
	}
	forged, err := newCertificate(ctx, testChain, member.PublicKey(), outsider.Sign, now.Add(-time.Minute), now.Add(time.Hour))
	must(t, err)
	other, err := newCertificate(ctx, testChain, member.PublicKey(), member.Sign, now.Add(-time.Minute), now.Add(time.Hour))
	must(t, err)
	cases := []struct {
		name  string
		certs [][]byte
		chain string
		at    time.Time
		want  string
	}{
		{"forged", forged.Certificate, testChain, now, "does not verify"},
		{"expired", good.Certificate, testChain, now.Add(2 * time.Hour), "valid"},
		{"not yet valid", good.Certificate, testChain, now.Add(-time.Hour), "valid"},
		{"other chain", good.Certificate, "x", now, "chain"},
		{"two certs", [][]byte{good.Certificate[0], other.Certificate[0]}, testChain, now, "certificates"},
		{"no binding", [][]byte{stripBinding(t, good)}, testChain, now, "no binding"},
		{"garbage", [][]byte{[]byte("junk")}, testChain, now, "x509"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := verifyBinding(c.certs, c.chain, c.at)
			if !errors.Is(err, ErrBinding) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrBinding mentioning %q", err, c.want)
			}
		})
	}
}
