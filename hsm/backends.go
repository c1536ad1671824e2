package hsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"hallmark/gm"
	"hallmark/hsm/devkeys"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
)

// tpmSigner signs inside the TPM.
type tpmSigner struct {
	ref      string
	key      *tpm.Key
	conn     *tpm.Conn
	ownsConn bool

	mu     sync.RWMutex
	closed bool
}

func (s *tpmSigner) PublicKey() *gm.PublicKey { return s.key.PublicKey() }
func (s *tpmSigner) KeyID() gm.KeyID          { return s.key.PublicKey().ID() }
func (s *tpmSigner) Custody() Kind            { return KindTPM }
func (s *tpmSigner) Ref() string              { return s.ref }

func (s *tpmSigner) Sign(ctx context.Context, msg []byte) (gm.Signature, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return gm.Signature{}, ErrClosed
	}
	sig, err := s.key.Sign(ctx, msg)
	if err != nil {
		return gm.Signature{}, fmt.Errorf("hsm: %s: %w", s.ref, mapTPMError(err))
	}
	return sig, nil
}

func (s *tpmSigner) Attestation(ctx context.Context, nonce []byte) (*Attestation, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	cert, err := s.key.Certify(ctx, nonce)
	if err != nil {
		return nil, fmt.Errorf("hsm: %s: %w", s.ref, mapTPMError(err))
	}
	return &Attestation{Format: AttestationTPM2Certify, TPM: cert}, nil
}

func (s *tpmSigner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.key.Close(ctx)
	if s.ownsConn {
		err = errors.Join(err, s.conn.Close())
	}
	return err
}

// softSigner holds a software key in memory: an unsealed tpm-sealed key
// or a decrypted dev key. Close wipes it.
type softSigner struct {
	ref  string
	kind Kind
	pub  *gm.PublicKey

	mu  sync.RWMutex
	key *gm.PrivateKey // nil once closed
}

func (s *softSigner) PublicKey() *gm.PublicKey { return s.pub }
func (s *softSigner) KeyID() gm.KeyID          { return s.pub.ID() }
func (s *softSigner) Custody() Kind            { return s.kind }
func (s *softSigner) Ref() string              { return s.ref }

func (s *softSigner) Sign(ctx context.Context, msg []byte) (gm.Signature, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.key == nil {
		return gm.Signature{}, ErrClosed
	}
	return s.key.Sign(ctx, msg)
}

// Attestation: a software key has no hardware evidence. (A tpm-sealed
// key's sealing proves nothing about which key the blob holds.)
func (s *softSigner) Attestation(context.Context, []byte) (*Attestation, error) { return nil, nil }

func (s *softSigner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil {
		s.key.Wipe()
		s.key = nil
	}
	return nil
}

// mapTPMError adds the hsm sentinels to errors from package tpm.
func mapTPMError(err error) error {
	switch {
	case errors.Is(err, tpm.ErrKeyNotFound):
		return fmt.Errorf("%w: %w", ErrKeyNotFound, err)
	case errors.Is(err, tpm.ErrHandleInUse):
		return fmt.Errorf("%w: %w", ErrKeyExists, err)
	case errors.Is(err, tpm.ErrPCRMismatch):
		return fmt.Errorf("%w: %w", ErrPCRState, err)
	case errors.Is(err, tpm.ErrWrongTPM):
		return fmt.Errorf("%w: %w", ErrWrongTPM, err)
	}
	return err
}

// --- tpm ---

func openTPM(ctx context.Context, r Ref, opts *Options) (Signer, error) {
	if r.AutoHandle {
		return nil, fmt.Errorf("%w: tpm:handle=auto names no key; use it only to generate", ErrBadRef)
	}
	var blob *tpmBlobFile
	if r.Path != "" {
		data, err := readKeyFile(r.Path)
		if err != nil {
			return nil, err
		}
		if blob, _, err = parseBlobFile(r.Path, data); err != nil {
			return nil, err
		}
	}
	c, owned, err := opts.conn(ctx)
	if err != nil {
		return nil, err
	}
	var key *tpm.Key
	if blob != nil {
		key, err = tpm.OpenKeyBlob(ctx, c, &tpm.KeyBlob{Public: blob.Public, Private: blob.Private})
		if err == nil && ledger.KeyBytes(key.PublicKey()) != blob.PublicKey {
			err = fmt.Errorf("%s: the blob's key differs from the recorded public key", r.Path)
		}
	} else {
		key, err = tpm.OpenPersistentKey(ctx, c, r.Handle)
	}
	if err != nil {
		if owned {
			c.Close()
		}
		if blob != nil && !errors.Is(err, tpm.ErrUnreachable) && !errors.Is(err, tpm.ErrNoSM2) {
			// A blob that does not load here belongs to another TPM (or
			// to this TPM before its owner seed changed).
			err = fmt.Errorf("%w: %s: %w", ErrWrongTPM, r.Path, err)
		}
		return nil, fmt.Errorf("hsm: %w", mapTPMError(err))
	}
	return &tpmSigner{ref: r.String(), key: key, conn: c, ownsConn: owned}, nil
}

func generateTPM(ctx context.Context, r Ref, opts *Options) (Signer, error) {
	c, owned, err := opts.conn(ctx)
	if err != nil {
		return nil, err
	}
	closeConn := func() {
		if owned {
			c.Close()
		}
	}
	if r.Path != "" {
		if _, err := os.Stat(r.Path); err == nil {
			closeConn()
			return nil, fmt.Errorf("hsm: %w: %s", ErrKeyExists, r.Path)
		}
		blob, pub, err := tpm.CreateKeyBlob(ctx, c)
		if err != nil {
			closeConn()
			return nil, fmt.Errorf("hsm: %w", err)
		}
		data, err := ledger.Marshal(&tpmBlobFile{Format: formatTPMBlob, PublicKey: ledger.KeyBytes(pub), Public: blob.Public, Private: blob.Private})
		if err == nil {
			err = writeNewFile(r.Path, data)
		}
		if err != nil {
			closeConn()
			return nil, fmt.Errorf("hsm: writing %s: %w", r.Path, err)
		}
	} else {
		if r.AutoHandle {
			if r.Handle, err = tpm.FreeKeyHandle(ctx, c); err != nil {
				closeConn()
				return nil, fmt.Errorf("hsm: %w", err)
			}
			r.AutoHandle = false
		}
		if _, err := tpm.CreatePersistentKey(ctx, c, r.Handle); err != nil {
			closeConn()
			return nil, fmt.Errorf("hsm: %w", mapTPMError(err))
		}
	}
	if owned {
		c.Close()
	}
	return openTPM(ctx, r, opts)
}

func destroyTPM(ctx context.Context, r Ref, opts *Options) (*gm.PublicKey, error) {
	if r.Path != "" {
		data, err := readKeyFile(r.Path)
		if err != nil {
			return nil, err
		}
		_, pub, err := parseBlobFile(r.Path, data)
		if err != nil {
			return nil, err
		}
		return pub, removeKeyFile(r.Path)
	}
	c, owned, err := opts.conn(ctx)
	if err != nil {
		return nil, err
	}
	if owned {
		defer c.Close()
	}
	key, err := tpm.OpenPersistentKey(ctx, c, r.Handle)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", mapTPMError(err))
	}
	if err := tpm.EvictKey(ctx, c, r.Handle); err != nil {
		return key.PublicKey(), fmt.Errorf("hsm: %w", mapTPMError(err))
	}
	return key.PublicKey(), nil
}

// --- tpm-sealed ---

func (r Ref) sealPCRs() []uint {
	if len(r.PCRs) > 0 {
		return r.PCRs
	}
	return []uint{FirmwarePCR}
}

func openSealed(ctx context.Context, r Ref, opts *Options) (Signer, error) {
	key, err := unsealKey(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	return &softSigner{ref: Ref{Kind: KindTPMSealed, Path: r.Path}.String(), kind: KindTPMSealed, pub: key.PublicKey(), key: key}, nil
}

// unsealKey reads a tpm-sealed key file and unseals its key, which the
// caller must wipe.
func unsealKey(ctx context.Context, r Ref, opts *Options) (*gm.PrivateKey, error) {
	data, err := readKeyFile(r.Path)
	if err != nil {
		return nil, err
	}
	f, pub, err := parseSealedFile(r.Path, data)
	if err != nil {
		return nil, err
	}
	c, owned, err := opts.conn(ctx)
	if err != nil {
		return nil, err
	}
	d, err := tpm.Unseal(ctx, c, f.blob())
	if owned {
		// The key is in memory from here on; free the TPM for others.
		c.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("hsm: %s: %w", r.Path, mapTPMError(err))
	}
	key, err := gm.NewPrivateKey(d)
	clear(d)
	if err != nil {
		return nil, fmt.Errorf("hsm: %s: unsealed data is not an SM2 key: %w", r.Path, err)
	}
	if !key.PublicKey().Equal(pub) {
		key.Wipe()
		return nil, fmt.Errorf("hsm: %s: unsealed key differs from the recorded public key", r.Path)
	}
	return key, nil
}

func generateSealed(ctx context.Context, r Ref, opts *Options) (Signer, error) {
	if _, err := os.Stat(r.Path); err == nil {
		return nil, fmt.Errorf("hsm: %w: %s", ErrKeyExists, r.Path)
	}
	key, err := gm.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	defer key.Wipe()
	c, owned, err := opts.conn(ctx)
	if err != nil {
		return nil, err
	}
	d := key.Bytes()
	blob, err := tpm.Seal(ctx, c, d, r.sealPCRs())
	clear(d)
	if owned {
		c.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("hsm: sealing %s: %w", r.Path, err)
	}
	if err := writeSealedFile(r.Path, key.PublicKey(), blob); err != nil {
		return nil, err
	}
	// Open it the way a node will, which proves it unseals.
	return openSealed(ctx, r, opts)
}

// writeSealedFile writes a tpm-sealed key file; it never replaces one.
func writeSealedFile(path string, pub *gm.PublicKey, blob *tpm.SealedBlob) error {
	data, err := ledger.Marshal(&sealedFile{
		Format: formatSealed, PublicKey: ledger.KeyBytes(pub),
		PCRs: blob.PCRs, Policy: blob.Policy, Public: blob.Public, Private: blob.Private,
	})
	if err == nil {
		err = writeNewFile(path, data)
	}
	if err != nil {
		return fmt.Errorf("hsm: writing %s: %w", path, err)
	}
	return nil
}

func destroyFile(r Ref, parse func(path string, data []byte) (*gm.PublicKey, error)) (*gm.PublicKey, error) {
	data, err := readKeyFile(r.Path)
	if err != nil {
		return nil, err
	}
	pub, err := parse(r.Path, data)
	if err != nil {
		return nil, err
	}
	return pub, removeKeyFile(r.Path)
}

// --- dev ---

func openDev(r Ref, opts *Options) (Signer, error) {
	if opts.Production {
		return nil, fmt.Errorf("hsm: %s: %w", r.Path, ErrProduction)
	}
	data, err := readKeyFile(r.Path)
	if err != nil {
		return nil, err
	}
	key, err := devkeys.Decrypt(data, opts.Passphrase)
	if err != nil {
		if errors.Is(err, devkeys.ErrWrongPassphrase) {
			return nil, fmt.Errorf("hsm: %s: %w: %w", r.Path, ErrWrongPassphrase, err)
		}
		return nil, fmt.Errorf("hsm: %s: %w", r.Path, err)
	}
	return &softSigner{ref: r.String(), kind: KindDev, pub: key.PublicKey(), key: key}, nil
}

func generateDev(r Ref, opts *Options) (Signer, error) {
	if opts.Production {
		return nil, fmt.Errorf("hsm: %s: %w", r.Path, ErrProduction)
	}
	key, err := gm.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	data, err := devkeys.Encrypt(nil, key, opts.Passphrase, opts.devKDF())
	if err == nil {
		err = writeNewFile(r.Path, data)
	}
	if err != nil {
		key.Wipe()
		return nil, fmt.Errorf("hsm: writing %s: %w", r.Path, err)
	}
	return &softSigner{ref: r.String(), kind: KindDev, pub: key.PublicKey(), key: key}, nil
}
