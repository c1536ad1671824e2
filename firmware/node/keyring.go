package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// keysFile, in the data directory, lists the node's keys once a rotation
// has given it more than the one its configuration names. When it exists
// it replaces the configuration's nodeKey: after a rotation the configured
// key may be destroyed.
const keysFile = "node-keys.json"

type keysDoc struct {
	Version int       `json:"version"`
	Keys    []keyNote `json:"keys"`
}

type keyNote struct {
	Ref   string   `json:"ref"`
	KeyID gm.KeyID `json:"keyId"`
	Added string   `json:"added,omitempty"`
}

// heldKey is one key the node holds.
type heldKey struct {
	signer  gm.Signer
	ref     string // "" for an injected signer
	custody string
	close   func() error
	added   time.Time
}

func (k *heldKey) id() gm.KeyID { return k.signer.PublicKey().ID() }

// keyRing holds the node's SM2 keys: normally one, two across a key
// rotation (the node must sign with the old key until the epoch boundary
// and with the new one from then on). All TPM keys share one connection,
// because a TPM without a resource manager serves one at a time.
type keyRing struct {
	path string
	opts hsm.Options

	mu   sync.Mutex
	keys []*heldKey
}

// openKeyRing opens the node's keys: those node-keys.json lists if it
// exists, else the configured key (or the injected signer).
func openKeyRing(ctx context.Context, n *Node, injected gm.Signer) (*keyRing, error) {
	cfg := n.cfg
	r := &keyRing{path: filepath.Join(cfg.DataDir, keysFile)}
	r.opts = hsm.Options{TPM: tpm.Config{Addr: cfg.TPM, Logger: n.log}, Production: cfg.Production, Logger: n.log, Actor: "hallmarkd"}
	if cfg.KeyPassphraseFile != "" {
		p, err := os.ReadFile(cfg.KeyPassphraseFile)
		if err != nil {
			return nil, fmt.Errorf("node: keyPassphraseFile: %w", err)
		}
		r.opts.Passphrase = []byte(strings.TrimRight(string(p), "\r\n"))
	}
	refs := []string{cfg.NodeKey}
	doc, err := r.load()
	if err != nil {
		return nil, err
	}
	if doc != nil {
		refs = refs[:0]
		for _, k := range doc.Keys {
			refs = append(refs, k.Ref)
		}
		if !slices.Contains(refs, cfg.NodeKey) && injected == nil {
			n.log.Info("the configured node key was rotated away; using the keys in "+keysFile, "configured", cfg.NodeKey, "keys", refs)
		}
	}
	if injected != nil {
		r.keys = append(r.keys, &heldKey{signer: injected, custody: "injected", close: func() error { return nil }})
		refs = slices.DeleteFunc(refs, func(ref string) bool { return ref == cfg.NodeKey })
	}
	for _, ref := range refs {
		if err := r.open(ctx, ref); err != nil {
			r.close()
			return nil, err
		}
	}
	if len(r.keys) == 0 {
		return nil, fmt.Errorf("node: %s lists no key", r.path)
	}
	return r, nil
}

// needsTPM reports whether ref is a key the TPM holds or unseals.
func needsTPM(ref string) bool {
	return strings.HasPrefix(ref, "tpm:") || strings.HasPrefix(ref, "tpm-sealed:")
}

// tpmOpts returns the options with the shared TPM connection, dialled on
// first use.
func (r *keyRing) tpmOpts(ctx context.Context, ref string) (hsm.Options, error) {
	if !needsTPM(ref) || r.opts.TPMConn != nil {
		return r.opts, nil
	}
	c, err := tpm.Dial(ctx, r.opts.TPM)
	if err != nil {
		return r.opts, fmt.Errorf("node: reaching the TPM for %s: %w", ref, err)
	}
	r.opts.TPMConn = c
	return r.opts, nil
}

func (r *keyRing) open(ctx context.Context, ref string) error {
	opts, err := r.tpmOpts(ctx, ref)
	if err != nil {
		return err
	}
	s, err := hsm.Open(ctx, ref, opts)
	if err != nil {
		return fmt.Errorf("node: opening the node key %q: %w", ref, err)
	}
	r.add(s)
	return nil
}

func (r *keyRing) add(s hsm.Signer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		if k.id() == s.KeyID() {
			s.Close()
			return
		}
	}
	r.keys = append(r.keys, &heldKey{signer: s, ref: s.Ref(), custody: string(s.Custody()), close: s.Close, added: time.Now()})
}

func (r *keyRing) load() (*keysDoc, error) {
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var d keysDoc
	if err := json.Unmarshal(b, &d); err != nil || d.Version != 1 {
		return nil, fmt.Errorf("node: %s is not a key list (version 1): %v", r.path, err)
	}
	return &d, nil
}

// save records the keys the node holds, atomically, so that a restart
// opens them all.
func (r *keyRing) save() error {
	r.mu.Lock()
	d := keysDoc{Version: 1}
	for _, k := range r.keys {
		if k.ref == "" {
			continue
		}
		d.Keys = append(d.Keys, keyNote{Ref: k.ref, KeyID: k.id(), Added: k.added.UTC().Format(time.RFC3339)})
	}
	r.mu.Unlock()
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return err
	}
	tmp := r.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("node: writing %s: %w", r.path, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("node: writing %s: %w", r.path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("node: writing %s: %w", r.path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, r.path); err != nil {
		return fmt.Errorf("node: writing %s: %w", r.path, err)
	}
	return nil
}

// ids returns the key ids the node holds, oldest first.
func (r *keyRing) ids() []gm.KeyID {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]gm.KeyID, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.id()
	}
	return out
}

// get returns the held key with id.
func (r *keyRing) get(id gm.KeyID) *heldKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		if k.id() == id {
			return k
		}
	}
	return nil
}

// first returns the oldest key.
func (r *keyRing) first() *heldKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[0]
}

// in returns the held key a validator set lists, or nil.
func (r *keyRing) in(vs []ledger.PeerConfig) *heldKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		for _, p := range vs {
			if p.PeerID == k.id() {
				return k
			}
		}
	}
	return nil
}

// generate creates a new key at ref in the custody of the key it replaces
// and has both sign the rotation statement for chainID.
func (r *keyRing) generate(ctx context.Context, ref string, old *heldKey, chainID, reason string, now time.Time) (*heldKey, *txs.NodeRotateKey, error) {
	want, err := hsm.ParseRef(ref)
	if err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	if old.ref != "" {
		have, err := hsm.ParseRef(old.ref)
		if err == nil && have.Kind != want.Kind {
			return nil, nil, fmt.Errorf("node: %w: the current key is %s, the new reference %s; a rotation keeps the custody", hsm.ErrCustodyMismatch, have.Kind, want.Kind)
		}
	}
	opts, err := r.tpmOpts(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	s, err := hsm.Generate(ctx, ref, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("node: creating the new key at %s: %w", ref, err)
	}
	st, err := hsm.SignRotation(ctx, chainID, reason, now.UnixMilli(), old.signer, s)
	if err != nil {
		newRef := s.Ref()
		s.Close()
		if _, derr := hsm.Destroy(ctx, newRef, opts); derr != nil {
			err = errors.Join(err, fmt.Errorf("removing the new key %s again: %w", newRef, derr))
		}
		return nil, nil, err
	}
	r.add(s)
	if err := r.save(); err != nil {
		return nil, nil, err
	}
	return r.get(s.KeyID()), st, nil
}

// destroy closes the held key id, destroys it in its custody, checks that
// it can no longer be opened, and forgets it.
func (r *keyRing) destroy(ctx context.Context, id gm.KeyID) (string, error) {
	k := r.get(id)
	if k == nil {
		return "", fmt.Errorf("node: this node holds no key %s", id)
	}
	if k.ref == "" {
		return "", fmt.Errorf("node: key %s was handed to the node in process; it cannot destroy it", id)
	}
	opts, err := r.tpmOpts(ctx, k.ref)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.keys = slices.DeleteFunc(r.keys, func(h *heldKey) bool { return h == k })
	r.mu.Unlock()
	if err := k.close(); err != nil {
		return "", fmt.Errorf("node: closing key %s: %w", id, err)
	}
	if err := r.save(); err != nil {
		return "", err
	}
	if _, err := hsm.Destroy(ctx, k.ref, opts); err != nil {
		return "", fmt.Errorf("node: destroying key %s at %s: %w", id, k.ref, err)
	}
	if s, err := hsm.Open(ctx, k.ref, opts); err == nil {
		s.Close()
		return "", fmt.Errorf("node: key %s at %s still opens after it was destroyed", id, k.ref)
	} else if !errors.Is(err, hsm.ErrKeyNotFound) {
		return "", fmt.Errorf("node: checking that %s is gone: %w", k.ref, err)
	}
	return k.ref, nil
}

func (r *keyRing) close() error {
	r.mu.Lock()
	keys := r.keys
	r.keys = nil
	r.mu.Unlock()
	var errs []error
	for _, k := range keys {
		if err := k.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.opts.TPMConn != nil {
		if err := r.opts.TPMConn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
