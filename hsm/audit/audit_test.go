package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"hallmark/hsm/audit"
)

func appendN(t *testing.T, l *audit.Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := l.Append(audit.Event{Op: "generate", Actor: "officer", Ref: fmt.Sprintf("dev:/k%d", i), Custody: "dev"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestChainVerifies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "audit.log")
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3)
	if _, err := l.Append(audit.Event{Op: "destroy", Actor: "officer", Err: errors.New("key not found")}); err != nil {
		t.Fatal(err)
	}
	entries, head, err := audit.VerifyFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 || head.Seq != 4 || head.Hash != entries[3].Hash {
		t.Fatalf("got %d entries, head %+v", len(entries), head)
	}
	if entries[3].Outcome != "key not found" || entries[0].Outcome != "ok" {
		t.Fatalf("outcomes: %q %q", entries[0].Outcome, entries[3].Outcome)
	}
	if _, _, err := audit.VerifyFile(path, &head); err != nil {
		t.Fatalf("verify against its own head: %v", err)
	}
}

func lines(t *testing.T, path string) [][]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))
}

func TestTamperingDetected(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, _ := audit.Open(path)
	appendN(t, l, 4)
	_, head, err := audit.VerifyFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	orig := lines(t, path)
	cases := map[string][][]byte{
		"edited":    {orig[0], bytes.Replace(orig[1], []byte("dev:/k1"), []byte("dev:/kX"), 1), orig[2], orig[3]},
		"deleted":   {orig[0], orig[2], orig[3]},
		"reordered": {orig[0], orig[2], orig[1], orig[3]},
		"cut front": {orig[1], orig[2], orig[3]},
	}
	for name, ls := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, bytes.Join(ls, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := audit.VerifyFile(p, nil); !errors.Is(err, audit.ErrBroken) {
			t.Errorf("%s log verified: %v", name, err)
		}
	}
	// Cutting the tail leaves a valid chain; only the recorded head
	// reveals it.
	p := filepath.Join(dir, "cut-tail")
	if err := os.WriteFile(p, bytes.Join(orig[:3], nil), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.VerifyFile(p, nil); err != nil {
		t.Fatalf("cut tail without a head: %v", err)
	}
	if _, _, err := audit.VerifyFile(p, &head); !errors.Is(err, audit.ErrBroken) {
		t.Fatalf("cut tail against the recorded head: %v", err)
	}
}

func TestTornTailDiscarded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := audit.Open(path)
	appendN(t, l, 2)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":3,"time":"2026-`) // a crash mid-write
	f.Close()
	e, err := l.Append(audit.Event{Op: "show", Actor: "officer"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 3 || e.Detail["discardedTornBytes"] == "" {
		t.Fatalf("entry after a torn tail: %+v", e)
	}
	if _, head, err := audit.VerifyFile(path, nil); err != nil || head.Seq != 3 {
		t.Fatalf("after recovery: %+v %v", head, err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := audit.Open(path) // as separate processes would
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < 5; i++ {
				if _, err := l.Append(audit.Event{Op: "list", Actor: fmt.Sprint("w", w)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if _, head, err := audit.VerifyFile(path, nil); err != nil || head.Seq != 20 {
		t.Fatalf("after concurrent appends: %+v %v", head, err)
	}
}

func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, _ := audit.Open(path)
	for i := 0; i < 2; i++ {
		l.Append(audit.Event{Op: "generate", Actor: "a"})
	}
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = audit.Verify(bytes.NewReader(b))
	})
}
