package boot

import (
	"io"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNotifyReady(t *testing.T) {
	t.Setenv(ReadyFDEnv, "")
	if told, err := NotifyReady(); told || err != nil {
		t.Fatalf("outside the init: %v, %v", told, err)
	}
	for _, bad := range []string{"x", "1", "-3"} {
		t.Setenv(ReadyFDEnv, bad)
		if _, err := NotifyReady(); err == nil {
			t.Errorf("%s=%q accepted", ReadyFDEnv, bad)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// NotifyReady takes ownership of the descriptor: give it a copy, so
	// that no *os.File here closes it a second time.
	fd, err := unix.Dup(int(w.Fd()))
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(ReadyFDEnv, strconv.Itoa(fd))
	told, err := NotifyReady()
	if !told || err != nil {
		t.Fatalf("NotifyReady = %v, %v", told, err)
	}
	// NotifyReady closed the write end: the reader sees the line, then EOF.
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "READY\n" {
		t.Fatalf("the init read %q, %v", b, err)
	}
}
