package hsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"hallmark/gm"
	"hallmark/hsm/devkeys"
	"hallmark/hsm/tpm"
	"hallmark/ledger/txs"
)

// Open opens the key named by ref for signing. It is the entry point the
// node runtime calls with the key reference from its config. Open is not
// a lifecycle operation and records nothing.
func Open(ctx context.Context, ref string, opts Options) (Signer, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	return open(ctx, r, &opts)
}

func open(ctx context.Context, r Ref, opts *Options) (Signer, error) {
	switch r.Kind {
	case KindTPM:
		return openTPM(ctx, r, opts)
	case KindTPMSealed:
		return openSealed(ctx, r, opts)
	case KindDev:
		return openDev(r, opts)
	case KindPKCS11:
		return openPKCS11(ctx, r, opts)
	}
	return nil, fmt.Errorf("hsm: %w: kind %q", ErrBadRef, r.Kind)
}

func generate(ctx context.Context, r Ref, opts *Options) (Signer, error) {
	switch r.Kind {
	case KindTPM:
		return generateTPM(ctx, r, opts)
	case KindTPMSealed:
		return generateSealed(ctx, r, opts)
	case KindDev:
		return generateDev(r, opts)
	case KindPKCS11:
		return generatePKCS11(ctx, r, opts)
	}
	return nil, fmt.Errorf("hsm: %w: kind %q", ErrBadRef, r.Kind)
}

// Generate creates a new key at ref and returns it open. It fails with
// ErrKeyExists rather than replace a key. tpm:handle=auto picks the first
// free handle; the signer's Ref names it.
func Generate(ctx context.Context, ref string, opts Options) (s Signer, err error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	s, err = generate(ctx, r, &opts)
	var pub *gm.PublicKey
	if s != nil {
		pub, ref = s.PublicKey(), s.Ref()
	}
	if aerr := opts.record("generate", ref, r.Kind, pub, err, nil); aerr != nil {
		if s != nil {
			s.Close()
		}
		return nil, aerr
	}
	return s, err
}

// KeyInfo describes a key for officers.
type KeyInfo struct {
	Ref         string            `json:"ref"`
	Custody     Kind              `json:"custody"`
	PublicKey   string            `json:"publicKey"` // 64-byte X ‖ Y, hex
	KeyID       gm.KeyID          `json:"keyId"`
	Attestation *Attestation      `json:"attestation,omitempty"`
	Detail      map[string]string `json:"detail,omitempty"`
	// Error is set by List for an entry it could not read.
	Error string `json:"error,omitempty"`
}

func infoOf(s Signer) *KeyInfo {
	return &KeyInfo{Ref: s.Ref(), Custody: s.Custody(), PublicKey: s.PublicKey().String(), KeyID: s.KeyID()}
}

// Describe opens the key (proving that its custody works: the TPM
// answers, the PCRs match, the passphrase is right) and returns its
// public key, id, custody and, where the hardware gives one, an
// attestation bound to nonce.
func Describe(ctx context.Context, ref string, nonce []byte, opts Options) (info *KeyInfo, err error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	var pub *gm.PublicKey
	defer func() {
		if aerr := opts.record("show", ref, r.Kind, pub, err, nil); aerr != nil {
			info, err = nil, aerr
		}
	}()
	s, err := open(ctx, r, &opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	pub = s.PublicKey()
	info = infoOf(s)
	if info.Attestation, err = s.Attestation(ctx, nonce); err != nil {
		return nil, err
	}
	switch r.Kind {
	case KindTPMSealed:
		data, err := readKeyFile(r.Path)
		if err == nil {
			if f, _, err := parseSealedFile(r.Path, data); err == nil {
				info.Detail = map[string]string{"pcrs": fmt.Sprint(f.PCRs), "pcrBank": "sha256"}
			}
		}
	case KindTPM:
		if ts, ok := s.(*tpmSigner); ok {
			info.Detail = map[string]string{"tpmName": fmt.Sprintf("%x", ts.key.Name())}
		}
	}
	return info, nil
}

// Destroy deletes the key at ref: evicts it from the TPM, deletes the
// key file, or destroys the PKCS#11 objects. Afterwards Open fails and a
// signer still open on a TPM key fails to sign. See docs/KEYS.md for what
// deleting a file cannot guarantee.
func Destroy(ctx context.Context, ref string, opts Options) (id gm.KeyID, err error) {
	r, err := ParseRef(ref)
	if err != nil {
		return id, fmt.Errorf("hsm: %w", err)
	}
	pub, err := destroy(ctx, r, &opts)
	if pub != nil {
		id = pub.ID()
	}
	if aerr := opts.record("destroy", ref, r.Kind, pub, err, nil); aerr != nil {
		return id, aerr
	}
	return id, err
}

func destroy(ctx context.Context, r Ref, opts *Options) (*gm.PublicKey, error) {
	switch r.Kind {
	case KindTPM:
		if r.AutoHandle {
			return nil, fmt.Errorf("hsm: %w: tpm:handle=auto names no key", ErrBadRef)
		}
		return destroyTPM(ctx, r, opts)
	case KindTPMSealed:
		return destroyFile(r, func(path string, data []byte) (*gm.PublicKey, error) {
			_, pub, err := parseSealedFile(path, data)
			return pub, err
		})
	case KindDev:
		return destroyFile(r, func(path string, data []byte) (*gm.PublicKey, error) {
			f, err := devkeys.Parse(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return f.Public()
		})
	case KindPKCS11:
		return destroyPKCS11(ctx, r, opts)
	}
	return nil, fmt.Errorf("hsm: %w: kind %q", ErrBadRef, r.Kind)
}

// RotateOptions describe a rotation.
type RotateOptions struct {
	// ChainID is the chain whose gov.node-rotate-key will carry the
	// statement (required: the chain refuses a statement for another).
	ChainID string
	Reason  string
	// Now stamps the statement; nil means time.Now.
	Now func() time.Time
}

// Rotate creates a new key at newRef in the same custody as oldRef and a
// statement, signed by both keys, that hands the old key's role to the
// new one: the body of the gov.node-rotate-key transaction that puts the
// rotation on chain. The old key stays: destroy it once the rotation is
// in force. If signing the statement fails, the new key is destroyed
// again.
func Rotate(ctx context.Context, oldRef, newRef string, ro RotateOptions, opts Options) (st *txs.NodeRotateKey, next Signer, err error) {
	oldR, err := ParseRef(oldRef)
	if err != nil {
		return nil, nil, fmt.Errorf("hsm: %w", err)
	}
	var oldPub *gm.PublicKey
	detail := map[string]string{"newRef": newRef}
	defer func() {
		if next != nil {
			detail["newRef"] = next.Ref()
			detail["newKeyId"] = next.KeyID().String()
		}
		if aerr := opts.record("rotate", oldRef, oldR.Kind, oldPub, err, detail); aerr != nil {
			if next != nil {
				next.Close()
			}
			st, next, err = nil, nil, aerr
		}
	}()
	newR, err := ParseRef(newRef)
	if err != nil {
		return nil, nil, fmt.Errorf("hsm: %w", err)
	}
	if ro.ChainID == "" {
		return nil, nil, fmt.Errorf("hsm: %w: the chain id is required (the chain refuses a statement for another chain)", ErrRotation)
	}
	if oldR.Kind != newR.Kind {
		return nil, nil, fmt.Errorf("hsm: %w: old key is %s, new reference is %s; a rotation keeps the custody", ErrCustodyMismatch, oldR.Kind, newR.Kind)
	}
	old, err := open(ctx, oldR, &opts)
	if err != nil {
		return nil, nil, fmt.Errorf("hsm: opening the old key: %w", err)
	}
	defer old.Close()
	oldPub = old.PublicKey()
	genOpts := opts
	borrowed := false
	if ts, ok := old.(*tpmSigner); ok && opts.TPMConn == nil {
		// A TPM without a resource manager (swtpm) serves one
		// connection at a time: the new key borrows the old key's.
		genOpts.TPMConn, borrowed = ts.conn, true
	}
	next, err = generate(ctx, newR, &genOpts)
	if err != nil {
		return nil, nil, fmt.Errorf("hsm: creating the new key: %w", err)
	}
	now := time.Now
	if ro.Now != nil {
		now = ro.Now
	}
	st, err = SignRotation(ctx, ro.ChainID, ro.Reason, now().UnixMilli(), old, next)
	if err != nil {
		ref := next.Ref()
		next.Close()
		next = nil
		if _, derr := destroy(ctx, mustParseRef(ref), &genOpts); derr != nil {
			err = errors.Join(err, fmt.Errorf("removing the new key %s again: %w", ref, derr))
		}
		return nil, nil, err
	}
	if borrowed {
		// Hand the new key a connection of its own once the old key's
		// is closed.
		ref := next.Ref()
		next.Close()
		old.Close()
		if next, err = open(ctx, mustParseRef(ref), &opts); err != nil {
			return nil, nil, fmt.Errorf("hsm: reopening the new key %s: %w", ref, err)
		}
	}
	return st, next, nil
}

func mustParseRef(s string) Ref {
	r, err := ParseRef(s)
	if err != nil {
		panic(fmt.Sprintf("hsm: a signer's own reference %q does not parse: %v", s, err))
	}
	return r
}

// ListOptions say where List looks.
type ListOptions struct {
	// TPM lists the SM2 keys at the TPM's persistent handles.
	TPM bool
	// Dirs are directories whose key files (tpm blobs, tpm-sealed, dev)
	// are listed. Files are identified by content, not by name.
	Dirs []string
}

// List describes the keys it finds without opening them: no unsealing,
// no passphrase. Unreadable entries are listed with their error.
func List(ctx context.Context, lo ListOptions, opts Options) (keys []KeyInfo, err error) {
	defer func() {
		detail := map[string]string{"found": fmt.Sprint(len(keys))}
		if aerr := opts.record("list", "", "", nil, err, detail); aerr != nil {
			keys, err = nil, aerr
		}
	}()
	if lo.TPM {
		tk, err := listTPM(ctx, &opts)
		if err != nil {
			return nil, err
		}
		keys = append(keys, tk...)
	}
	for _, dir := range lo.Dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("hsm: listing %s: %w", dir, err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			path := filepath.Join(dir, e.Name())
			data, err := readKeyFile(path)
			if err != nil {
				continue // too large or unreadable: not a key file
			}
			kind, pub, err := fileKind(data)
			if err != nil {
				continue
			}
			r := Ref{Kind: kind, Path: path}
			keys = append(keys, KeyInfo{Ref: r.String(), Custody: kind, PublicKey: pub.String(), KeyID: pub.ID()})
		}
	}
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].Ref < keys[j].Ref })
	return keys, nil
}

func listTPM(ctx context.Context, opts *Options) ([]KeyInfo, error) {
	c, owned, err := opts.conn(ctx)
	if err != nil {
		return nil, err
	}
	if owned {
		defer c.Close()
	}
	handles, err := tpm.PersistentHandles(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	var out []KeyInfo
	for _, h := range handles {
		ref := Ref{Kind: KindTPM, Handle: h}.String()
		k, err := tpm.OpenPersistentKey(ctx, c, h)
		if errors.Is(err, tpm.ErrNotSM2Key) {
			continue // an SRK, an EK, someone else's key
		}
		if err != nil {
			if errors.Is(err, tpm.ErrNoSM2) || errors.Is(err, tpm.ErrUnreachable) {
				return nil, fmt.Errorf("hsm: %w", err)
			}
			out = append(out, KeyInfo{Ref: ref, Custody: KindTPM, Error: err.Error()})
			continue
		}
		out = append(out, KeyInfo{Ref: ref, Custody: KindTPM, PublicKey: k.PublicKey().String(), KeyID: k.PublicKey().ID(),
			Detail: map[string]string{"tpmName": fmt.Sprintf("%x", k.Name())}})
	}
	return out, nil
}
