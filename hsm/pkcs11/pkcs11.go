//go:build pkcs11 && cgo

// Package pkcs11 reaches SM2 keys in a hardware security module through
// PKCS#11 (github.com/miekg/pkcs11, which needs cgo; the package builds
// only with the build tag pkcs11).
//
// SM2 has no standard PKCS#11 mechanism: HSM vendors define their own
// (in the vendor range from CKM_VENDOR_DEFINED), and the caller names it.
// The convention here is that the mechanism signs the 32-byte
// e = SM3(Z_A ‖ M) it is given, like CKM_ECDSA signs a digest, and returns
// r ‖ s (64 bytes) or a DER SEQUENCE. Key pairs are found by CKA_LABEL and
// must sit on the SM2 curve (CKA_EC_PARAMS = OID 1.2.156.10197.1.301).
//
// Only the plumbing (module loading, token lookup, login, key lookup and
// generation, error mapping) is tested, against SoftHSM2, which has no SM2
// mechanism. No vendor SM2 mechanism has been exercised.
package pkcs11

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"hallmark/gm"
)

// Errors.
var (
	ErrModule        = errors.New("cannot load the PKCS#11 module")
	ErrTokenNotFound = errors.New("no PKCS#11 token with this label or slot")
	ErrWrongPIN      = errors.New("wrong PKCS#11 PIN")
	ErrPINLocked     = errors.New("PKCS#11 PIN is locked")
	ErrKeyNotFound   = errors.New("no key pair with this label in the token")
	ErrKeyExists     = errors.New("a key with this label already exists in the token")
	ErrNotSM2        = errors.New("key is not on the SM2 curve")
	ErrMechanism     = errors.New("the token does not support the configured mechanism")
	ErrNotSM2Sig     = errors.New("the mechanism's output is not an SM2 signature under the key")
)

// OIDSM2Curve is the SM2 curve's object identifier (GB/T 33560).
var oidSM2Curve = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}

// Config says where the token is.
type Config struct {
	Module string // path of the vendor's PKCS#11 library
	Token  string // token label; empty to use SlotID
	SlotID *uint
	PIN    []byte // user PIN; empty to skip login
}

// Session is a logged-in session on one token. PKCS#11 sessions are not
// safe for concurrent use; Session serialises its calls.
type Session struct {
	mu   sync.Mutex
	ctx  *p11.Ctx
	sh   p11.SessionHandle
	slot uint
}

// Open loads the module, finds the token, opens a read-write session and
// logs in as the user.
func Open(cfg Config) (*Session, error) {
	ctx := p11.New(cfg.Module)
	if ctx == nil {
		return nil, fmt.Errorf("%w %s", ErrModule, cfg.Module)
	}
	if err := ctx.Initialize(); err != nil && !is(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return nil, fmt.Errorf("%w %s: C_Initialize: %v", ErrModule, cfg.Module, err)
	}
	slot, err := findSlot(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sh, err := ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("C_OpenSession on slot %d: %w", slot, err)
	}
	s := &Session{ctx: ctx, sh: sh, slot: slot}
	if len(cfg.PIN) > 0 {
		err := ctx.Login(sh, p11.CKU_USER, string(cfg.PIN))
		switch {
		case err == nil, is(err, p11.CKR_USER_ALREADY_LOGGED_IN):
		case is(err, p11.CKR_PIN_INCORRECT):
			s.Close()
			return nil, fmt.Errorf("token on slot %d: %w", slot, ErrWrongPIN)
		case is(err, p11.CKR_PIN_LOCKED):
			s.Close()
			return nil, fmt.Errorf("token on slot %d: %w", slot, ErrPINLocked)
		default:
			s.Close()
			return nil, fmt.Errorf("C_Login on slot %d: %w", slot, err)
		}
	}
	return s, nil
}

func is(err error, rv uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == rv
}

func findSlot(ctx *p11.Ctx, cfg Config) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, slot := range slots {
		if cfg.SlotID != nil && slot != *cfg.SlotID {
			continue
		}
		if cfg.Token == "" {
			return slot, nil
		}
		info, err := ctx.GetTokenInfo(slot)
		if err != nil {
			continue
		}
		if info.Label == cfg.Token {
			return slot, nil
		}
	}
	if cfg.Token != "" {
		return 0, fmt.Errorf("%w: label %q", ErrTokenNotFound, cfg.Token)
	}
	return 0, fmt.Errorf("%w: slot %d", ErrTokenNotFound, *cfg.SlotID)
}

// Close closes the session. It does not log out or finalize the module:
// both are process-wide in PKCS#11 and would break other sessions; the
// token logs the application out when its last session closes.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return nil
	}
	err := s.ctx.CloseSession(s.sh)
	s.ctx = nil
	return err
}

// Key is a key pair found by label.
type Key struct {
	Label   string
	Private p11.ObjectHandle
	Public  p11.ObjectHandle
	PubKey  *gm.PublicKey
}

func (s *Session) find(class uint, label string) ([]p11.ObjectHandle, error) {
	if err := s.ctx.FindObjectsInit(s.sh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, class),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}); err != nil {
		return nil, fmt.Errorf("C_FindObjectsInit: %w", err)
	}
	objs, _, err := s.ctx.FindObjects(s.sh, 4)
	if ferr := s.ctx.FindObjectsFinal(s.sh); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("C_FindObjects: %w", err)
	}
	return objs, nil
}

// FindKey finds the SM2 key pair labelled label.
func (s *Session) FindKey(label string) (*Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return nil, errors.New("pkcs11: session closed")
	}
	privs, err := s.find(p11.CKO_PRIVATE_KEY, label)
	if err != nil {
		return nil, err
	}
	pubs, err := s.find(p11.CKO_PUBLIC_KEY, label)
	if err != nil {
		return nil, err
	}
	if len(privs) == 0 || len(pubs) == 0 {
		return nil, fmt.Errorf("%w: %q (%d private, %d public objects)", ErrKeyNotFound, label, len(privs), len(pubs))
	}
	if len(privs) > 1 || len(pubs) > 1 {
		return nil, fmt.Errorf("label %q is ambiguous: %d private and %d public objects", label, len(privs), len(pubs))
	}
	attrs, err := s.ctx.GetAttributeValue(s.sh, pubs[0], []*p11.Attribute{
		p11.NewAttribute(p11.CKA_EC_PARAMS, nil),
		p11.NewAttribute(p11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("reading the public key of %q: %w", label, err)
	}
	pub, err := parsePublic(attrs[0].Value, attrs[1].Value)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", label, err)
	}
	return &Key{Label: label, Private: privs[0], Public: pubs[0], PubKey: pub}, nil
}

func sm2Params() []byte {
	b, err := asn1.Marshal(oidSM2Curve)
	if err != nil {
		panic(err)
	}
	return b
}

// parsePublic checks CKA_EC_PARAMS names the SM2 curve and decodes
// CKA_EC_POINT (a DER OCTET STRING around 0x04 ‖ X ‖ Y, or the raw point
// some tokens return).
func parsePublic(params, point []byte) (*gm.PublicKey, error) {
	if !bytes.Equal(params, sm2Params()) {
		return nil, fmt.Errorf("%w: CKA_EC_PARAMS %x", ErrNotSM2, params)
	}
	var raw []byte
	if rest, err := asn1.Unmarshal(point, &raw); err != nil || len(rest) != 0 {
		raw = point
	}
	return gm.ParsePublicKey(raw)
}

// ParseSignature accepts a mechanism's output as r ‖ s or as DER.
func ParseSignature(out []byte) (gm.Signature, error) {
	if len(out) == gm.SignatureSize {
		return gm.ParseSignature(out)
	}
	return gm.ParseDERSignature(out)
}

// SignDigest runs mechanism over e with the key and checks the result is
// an SM2 signature under the key's public part: a mechanism that computes
// something else (SoftHSM2's CKM_ECDSA on an SM2-curve key, say) is
// reported, not passed on.
func (s *Session) SignDigest(k *Key, mechanism uint, e gm.Digest) (gm.Signature, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return gm.Signature{}, errors.New("pkcs11: session closed")
	}
	if err := s.ctx.SignInit(s.sh, []*p11.Mechanism{p11.NewMechanism(mechanism, nil)}, k.Private); err != nil {
		if is(err, p11.CKR_MECHANISM_INVALID) || is(err, p11.CKR_KEY_TYPE_INCONSISTENT) || is(err, p11.CKR_MECHANISM_PARAM_INVALID) {
			return gm.Signature{}, fmt.Errorf("%w: mechanism 0x%08x with key %q: %v", ErrMechanism, mechanism, k.Label, err)
		}
		return gm.Signature{}, fmt.Errorf("C_SignInit: %w", err)
	}
	out, err := s.ctx.Sign(s.sh, e[:])
	if err != nil {
		return gm.Signature{}, fmt.Errorf("C_Sign with mechanism 0x%08x: %w", mechanism, err)
	}
	sig, err := ParseSignature(out)
	if err != nil || !k.PubKey.VerifyDigest(e, sig) {
		return gm.Signature{}, fmt.Errorf("%w: mechanism 0x%08x (a vendor SM2 mechanism is required; SoftHSM2 has none)", ErrNotSM2Sig, mechanism)
	}
	return sig, nil
}

// Generate creates a token-resident SM2 key pair labelled label with
// mechanism keygen (0 means CKM_EC_KEY_PAIR_GEN on the SM2 curve). The
// private key is sensitive and not extractable.
func (s *Session) Generate(label string, keygen uint) (*Key, error) {
	if _, err := s.FindKey(label); err == nil {
		return nil, fmt.Errorf("%w: %q", ErrKeyExists, label)
	} else if !errors.Is(err, ErrKeyNotFound) {
		return nil, err
	}
	if keygen == 0 {
		keygen = p11.CKM_EC_KEY_PAIR_GEN
	}
	s.mu.Lock()
	pubTmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_EC_PARAMS, sm2Params()),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}
	privTmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}
	_, _, err := s.ctx.GenerateKeyPair(s.sh, []*p11.Mechanism{p11.NewMechanism(keygen, nil)}, pubTmpl, privTmpl)
	s.mu.Unlock()
	if err != nil {
		if is(err, p11.CKR_MECHANISM_INVALID) || is(err, p11.CKR_CURVE_NOT_SUPPORTED) || is(err, p11.CKR_DOMAIN_PARAMS_INVALID) {
			return nil, fmt.Errorf("%w: key generation 0x%08x on the SM2 curve: %v", ErrMechanism, keygen, err)
		}
		return nil, fmt.Errorf("C_GenerateKeyPair: %w", err)
	}
	return s.FindKey(label)
}

// Destroy destroys the key pair labelled label.
func (s *Session) Destroy(label string) (*gm.PublicKey, error) {
	k, err := s.FindKey(label)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ctx.DestroyObject(s.sh, k.Private); err != nil {
		return k.PubKey, fmt.Errorf("destroying the private key %q: %w", label, err)
	}
	if err := s.ctx.DestroyObject(s.sh, k.Public); err != nil {
		return k.PubKey, fmt.Errorf("destroying the public key %q: %w", label, err)
	}
	return k.PubKey, nil
}
