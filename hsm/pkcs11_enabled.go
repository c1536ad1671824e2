//go:build pkcs11 && cgo

package hsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"hallmark/gm"
	"hallmark/hsm/pkcs11"
)

// PKCS11Available reports whether this binary was built with PKCS#11
// support (build tag pkcs11, cgo enabled).
const PKCS11Available = true

// pkcs11Signer signs inside an HSM with a vendor SM2 mechanism.
type pkcs11Signer struct {
	ref       string
	session   *pkcs11.Session
	key       *pkcs11.Key
	mechanism uint

	mu     sync.RWMutex
	closed bool
}

func (s *pkcs11Signer) PublicKey() *gm.PublicKey { return s.key.PubKey }
func (s *pkcs11Signer) KeyID() gm.KeyID          { return s.key.PubKey.ID() }
func (s *pkcs11Signer) Custody() Kind            { return KindPKCS11 }
func (s *pkcs11Signer) Ref() string              { return s.ref }

func (s *pkcs11Signer) Sign(ctx context.Context, msg []byte) (gm.Signature, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return gm.Signature{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return gm.Signature{}, err
	}
	if s.mechanism == 0 {
		return gm.Signature{}, fmt.Errorf("hsm: %s: no SM2 signing mechanism configured (add mechanism=0x... from the HSM vendor's documentation to the reference)", s.ref)
	}
	sig, err := s.session.SignDigest(s.key, s.mechanism, s.key.PubKey.Digest(msg))
	if err != nil {
		return gm.Signature{}, fmt.Errorf("hsm: %s: %w", s.ref, err)
	}
	return sig, nil
}

// Attestation: PKCS#11 has no standard key attestation.
func (s *pkcs11Signer) Attestation(context.Context, []byte) (*Attestation, error) { return nil, nil }

func (s *pkcs11Signer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.session.Close()
}

func pkcs11PIN(r Ref, opts *Options) ([]byte, error) {
	if len(opts.PIN) > 0 {
		return opts.PIN, nil
	}
	src := r.PKCS11.PINSource
	switch {
	case src == "":
		return nil, nil
	case strings.HasPrefix(src, "env:"):
		v, ok := os.LookupEnv(strings.TrimPrefix(src, "env:"))
		if !ok {
			return nil, fmt.Errorf("hsm: PKCS#11 PIN: environment variable %s is not set", strings.TrimPrefix(src, "env:"))
		}
		return []byte(v), nil
	case strings.HasPrefix(src, "file:"):
		b, err := os.ReadFile(strings.TrimPrefix(src, "file:"))
		if err != nil {
			return nil, fmt.Errorf("hsm: PKCS#11 PIN: %w", err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	}
	return nil, fmt.Errorf("hsm: PKCS#11 PIN source %q", src)
}

func pkcs11Session(r Ref, opts *Options) (*pkcs11.Session, error) {
	pin, err := pkcs11PIN(r, opts)
	if err != nil {
		return nil, err
	}
	p := r.PKCS11
	s, err := pkcs11.Open(pkcs11.Config{Module: p.Module, Token: p.Token, SlotID: p.SlotID, PIN: pin})
	if err != nil {
		if errors.Is(err, pkcs11.ErrWrongPIN) {
			return nil, fmt.Errorf("hsm: %s: %w: %w", r.String(), ErrWrongPassphrase, err)
		}
		return nil, fmt.Errorf("hsm: %s: %w", r.String(), err)
	}
	return s, nil
}

func mapPKCS11Error(r Ref, err error) error {
	switch {
	case errors.Is(err, pkcs11.ErrKeyNotFound):
		return fmt.Errorf("hsm: %s: %w: %w", r.String(), ErrKeyNotFound, err)
	case errors.Is(err, pkcs11.ErrKeyExists):
		return fmt.Errorf("hsm: %s: %w: %w", r.String(), ErrKeyExists, err)
	}
	return fmt.Errorf("hsm: %s: %w", r.String(), err)
}

func openPKCS11(_ context.Context, r Ref, opts *Options) (Signer, error) {
	s, err := pkcs11Session(r, opts)
	if err != nil {
		return nil, err
	}
	k, err := s.FindKey(r.PKCS11.Object)
	if err != nil {
		s.Close()
		return nil, mapPKCS11Error(r, err)
	}
	return &pkcs11Signer{ref: r.String(), session: s, key: k, mechanism: r.PKCS11.Mechanism}, nil
}

func generatePKCS11(_ context.Context, r Ref, opts *Options) (Signer, error) {
	s, err := pkcs11Session(r, opts)
	if err != nil {
		return nil, err
	}
	k, err := s.Generate(r.PKCS11.Object, r.PKCS11.KeygenMechanism)
	if err != nil {
		s.Close()
		return nil, mapPKCS11Error(r, err)
	}
	return &pkcs11Signer{ref: r.String(), session: s, key: k, mechanism: r.PKCS11.Mechanism}, nil
}

func destroyPKCS11(_ context.Context, r Ref, opts *Options) (*gm.PublicKey, error) {
	s, err := pkcs11Session(r, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	pub, err := s.Destroy(r.PKCS11.Object)
	if err != nil {
		return pub, mapPKCS11Error(r, err)
	}
	return pub, nil
}
