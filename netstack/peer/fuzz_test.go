package peer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"hallmark/gm"
)

func FuzzVerifyBinding(f *testing.F) {
	key, err := gm.NewPrivateKey(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	cert, err := newCertificate(context.Background(), testChain, key.PublicKey(), key.Sign, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cert.Certificate[0])
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		id, err := verifyBinding([][]byte{der}, testChain, now)
		if err == nil && !id.Equal(key.PublicKey()) {
			// Only the seed's identity can sign a binding here.
			t.Fatalf("accepted a binding for %s", id.ID())
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	writeFrame(&buf, []byte("hello"))
	writeFrame(&buf, nil)
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			msg, err := readFrame(r, 64)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(msg) > 64 {
				t.Fatal("frame above the limit returned")
			}
		}
	})
}
