package reason_test

import (
	"errors"
	"fmt"
	"testing"

	"hallmark/ledger/reason"
)

func TestNamesAreUniqueAndParse(t *testing.T) {
	seen := map[string]reason.Code{}
	for _, c := range reason.Codes() {
		n := c.String()
		if prev, dup := seen[n]; dup {
			t.Fatalf("%d and %d share the name %q", prev, c, n)
		}
		seen[n] = c
		back, err := reason.Parse(n)
		if err != nil || back != c {
			t.Fatalf("parse %q: %v %v", n, back, err)
		}
	}
	if len(seen) < 60 {
		t.Fatalf("only %d codes", len(seen))
	}
	if reason.Code(12345).Known() || reason.Code(12345).String() != "code-12345" {
		t.Fatal("unknown code rendering")
	}
}

// TestStableNumbers pins a few numbers: they are published in receipts
// and the API and must never change.
func TestStableNumbers(t *testing.T) {
	for c, n := range map[reason.Code]uint16{
		reason.OK: 0, reason.Malformed: 100, reason.BadSignature: 105, reason.TooOld: 200, reason.Duplicate: 202,
		reason.UnknownSender: 300, reason.SenderFrozen: 301, reason.FilterSender: 400, reason.FilterKeyword: 402,
		reason.InsufficientBalance: 564, reason.NotAdmin: 600, reason.ReadDenied: 710, reason.Internal: 900,
	} {
		if uint16(c) != n {
			t.Errorf("%s is %d, published as %d", c, c, n)
		}
	}
}

func TestOf(t *testing.T) {
	e := reason.Errorf(reason.Duplicate, "id %d", 7)
	wrapped := fmt.Errorf("tx 3: %w", e)
	if reason.Of(wrapped) != reason.Duplicate || reason.Of(nil) != reason.OK || reason.Of(errors.New("io")) != reason.Internal {
		t.Fatal("Of")
	}
	if !errors.Is(wrapped, reason.New(reason.Duplicate, "")) || errors.Is(wrapped, reason.New(reason.TooOld, "")) {
		t.Fatal("Is")
	}
	if e.Error() != "duplicate (202): id 7" {
		t.Fatalf("message %q", e.Error())
	}
}
