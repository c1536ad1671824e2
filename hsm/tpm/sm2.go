package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"hallmark/gm"
)

// Persistent-handle ranges. The owner hierarchy's persistent handles run
// from 0x81000000 to 0x817FFFFF; Hallmark allocates its keys from
// FirstKeyHandle upward, clear of 0x81000001 (the conventional SRK) and
// the 0x8101xxxx endorsement range.
const (
	FirstKeyHandle tpm2.TPMHandle = 0x81000010
	LastKeyHandle  tpm2.TPMHandle = 0x810000FF
	ownerFirst     tpm2.TPMHandle = 0x81000000
	ownerLast      tpm2.TPMHandle = 0x817FFFFF
)

// Errors about keys.
var (
	ErrKeyNotFound = errors.New("no key at this TPM handle")
	ErrHandleInUse = errors.New("TPM handle already holds an object")
	ErrNotSM2Key   = errors.New("object is not an SM2 signing key")
	ErrNoFreeSlot  = errors.New("no free persistent handle in Hallmark's range")
	ErrBadResponse = errors.New("malformed TPM response")
)

// KeyBlob is an SM2 key wrapped by the TPM under the storage root key:
// the TPM2B_PUBLIC and TPM2B_PRIVATE contents that TPM2_Load takes. The
// private part is encrypted with a key that never leaves the TPM; the blob
// loads only on the TPM that made it (and only while the owner seed is
// unchanged).
type KeyBlob struct {
	Public  []byte // TPMT_PUBLIC
	Private []byte // TPM2B_PRIVATE contents
}

// sm2Template is an unrestricted SM2 signing key. Its scheme is NULL,
// because go-tpm cannot marshal an SM2 scheme; TPM2_Sign names the scheme.
func sm2Template() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCSM2P256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		}),
	}
}

// SM2PublicKey extracts the SM2 public key from a TPMT_PUBLIC, checking
// that it describes an SM2 signing key.
func SM2PublicKey(pub *tpm2.TPMTPublic) (*gm.PublicKey, error) {
	if pub.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("%w: type 0x%04x", ErrNotSM2Key, uint16(pub.Type))
	}
	if !pub.ObjectAttributes.SignEncrypt || pub.ObjectAttributes.Decrypt || pub.ObjectAttributes.Restricted {
		return nil, fmt.Errorf("%w: not an unrestricted signing key", ErrNotSM2Key)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSM2Key, err)
	}
	if parms.CurveID != tpm2.TPMECCSM2P256 {
		return nil, fmt.Errorf("%w: curve 0x%04x", ErrNotSM2Key, uint16(parms.CurveID))
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSM2Key, err)
	}
	if len(point.X.Buffer) > 32 || len(point.Y.Buffer) > 32 {
		return nil, fmt.Errorf("%w: coordinate longer than 32 bytes", ErrNotSM2Key)
	}
	var xy [gm.PublicKeySize]byte
	copy(xy[32-len(point.X.Buffer):32], point.X.Buffer)
	copy(xy[64-len(point.Y.Buffer):], point.Y.Buffer)
	return gm.ParsePublicKey(xy[:])
}

// srkTemplate is the TCG reference ECC P-256 storage root key. Primary
// keys derive deterministically from the owner seed and the template, so
// creating it again yields the same key.
func srkTemplate() tpm2.TPMTPublic { return tpm2.ECCSRKTemplate }

// createSRK loads the storage root key as a transient object. The caller
// flushes it.
func createSRK(t transport.TPM) (tpm2.NamedHandle, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(srkTemplate()),
	}.Execute(t)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("creating storage root key: %w", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// CreateKeyBlob creates an SM2 key under the storage root key and returns
// it wrapped, without keeping anything in the TPM.
func CreateKeyBlob(ctx context.Context, c *Conn) (*KeyBlob, *gm.PublicKey, error) {
	if err := requireSM2(ctx, c); err != nil {
		return nil, nil, err
	}
	var blob *KeyBlob
	var pub *gm.PublicKey
	err := c.Do(ctx, func(t transport.TPM) error {
		var err error
		blob, pub, err = createBlob(t)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("tpm %s: creating SM2 key: %w", c.Addr(), err)
	}
	return blob, pub, nil
}

func createBlob(t transport.TPM) (*KeyBlob, *gm.PublicKey, error) {
	srk, err := createSRK(t)
	if err != nil {
		return nil, nil, err
	}
	defer flush(t, srk.Handle)
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     tpm2.New2B(sm2Template()),
	}.Execute(t)
	if err != nil {
		return nil, nil, fmt.Errorf("TPM2_Create: %w", err)
	}
	public, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: public area: %v", ErrBadResponse, err)
	}
	pub, err := SM2PublicKey(public)
	if err != nil {
		return nil, nil, err
	}
	return &KeyBlob{Public: tpm2.Marshal(*public), Private: rsp.OutPrivate.Buffer}, pub, nil
}

// loadBlob loads a key blob under a fresh SRK and returns its transient
// handle; the SRK is flushed again.
func loadBlob(t transport.TPM, blob *KeyBlob) (tpm2.NamedHandle, error) {
	srk, err := createSRK(t)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	defer flush(t, srk.Handle)
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: blob.Private},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](blob.Public),
	}.Execute(t)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("loading key blob: %w", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

// CreatePersistentKey creates an SM2 key and makes it persistent at
// handle in the owner hierarchy. It fails with ErrHandleInUse if the
// handle holds an object.
func CreatePersistentKey(ctx context.Context, c *Conn, handle tpm2.TPMHandle) (*gm.PublicKey, error) {
	if handle < ownerFirst || handle > ownerLast {
		return nil, fmt.Errorf("handle 0x%08x is outside the owner persistent range 0x%08x-0x%08x", uint32(handle), uint32(ownerFirst), uint32(ownerLast))
	}
	if err := requireSM2(ctx, c); err != nil {
		return nil, err
	}
	var pub *gm.PublicKey
	// Not repeated on a broken connection: the key may already have been
	// made persistent.
	err := c.DoOnce(ctx, func(t transport.TPM) error {
		if _, err := (tpm2.ReadPublic{ObjectHandle: handle}).Execute(t); err == nil {
			return fmt.Errorf("0x%08x: %w", uint32(handle), ErrHandleInUse)
		}
		blob, p, err := createBlob(t)
		if err != nil {
			return err
		}
		loaded, err := loadBlob(t, blob)
		if err != nil {
			return err
		}
		defer flush(t, loaded.Handle)
		if _, err := (tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(c.ownerAuth)},
			ObjectHandle:     loaded,
			PersistentHandle: handle,
		}).Execute(t); err != nil {
			return fmt.Errorf("TPM2_EvictControl to 0x%08x: %w", uint32(handle), err)
		}
		pub = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: creating persistent SM2 key: %w", c.Addr(), err)
	}
	return pub, nil
}

// FreeKeyHandle returns the first unused handle in Hallmark's range.
func FreeKeyHandle(ctx context.Context, c *Conn) (tpm2.TPMHandle, error) {
	used, err := PersistentHandles(ctx, c)
	if err != nil {
		return 0, err
	}
	taken := make(map[tpm2.TPMHandle]bool, len(used))
	for _, h := range used {
		taken[h] = true
	}
	for h := FirstKeyHandle; h <= LastKeyHandle; h++ {
		if !taken[h] {
			return h, nil
		}
	}
	return 0, ErrNoFreeSlot
}

// PersistentHandles lists the owner hierarchy's persistent handles.
func PersistentHandles(ctx context.Context, c *Conn) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	err := c.Do(ctx, func(t transport.TPM) error {
		hs, err := listHandles(t, uint32(ownerFirst))
		if err != nil {
			return err
		}
		out = out[:0]
		for _, h := range hs {
			if h <= ownerLast {
				out = append(out, h)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: %w", c.Addr(), err)
	}
	return out, nil
}

// EvictKey removes the persistent object at handle. Afterwards nothing
// can sign with it: the TPM holds no other copy.
func EvictKey(ctx context.Context, c *Conn, handle tpm2.TPMHandle) error {
	err := c.DoOnce(ctx, func(t transport.TPM) error {
		rp, err := (tpm2.ReadPublic{ObjectHandle: handle}).Execute(t)
		if err != nil {
			if isMissingHandle(err) {
				return fmt.Errorf("0x%08x: %w", uint32(handle), ErrKeyNotFound)
			}
			return err
		}
		_, err = (tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(c.ownerAuth)},
			ObjectHandle:     tpm2.NamedHandle{Handle: handle, Name: rp.Name},
			PersistentHandle: handle,
		}).Execute(t)
		return err
	})
	if err != nil {
		return fmt.Errorf("tpm %s: evicting 0x%08x: %w", c.Addr(), uint32(handle), err)
	}
	return nil
}

// isMissingHandle reports whether err says a handle refers to nothing.
func isMissingHandle(err error) bool {
	return errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, tpm2.TPMRCReferenceH0)
}

func requireSM2(ctx context.Context, c *Conn) error {
	caps, err := c.capabilities(ctx)
	if err != nil {
		return err
	}
	return caps.CheckSM2()
}

// Key is an SM2 key held by the TPM, either at a persistent handle or as a
// blob loaded on demand. Sign computes nothing secret in process memory.
// A Key is safe for concurrent use.
type Key struct {
	conn       *Conn
	persistent tpm2.TPMHandle // zero for a blob
	blob       *KeyBlob
	public     tpm2.TPMTPublic
	name       tpm2.TPM2BName
	pub        *gm.PublicKey
	hashAlg    tpm2.TPMAlgID

	mu        sync.Mutex
	loaded    tpm2.TPMHandle // transient handle of a loaded blob
	loadedGen uint64         // connection generation that loaded it
}

// OpenPersistentKey opens the SM2 key at a persistent handle.
func OpenPersistentKey(ctx context.Context, c *Conn, handle tpm2.TPMHandle) (*Key, error) {
	caps, err := c.capabilities(ctx)
	if err != nil {
		return nil, err
	}
	if err := caps.CheckSM2(); err != nil {
		return nil, fmt.Errorf("tpm %s: %w", c.Addr(), err)
	}
	k := &Key{conn: c, persistent: handle, hashAlg: caps.SignHashAlg()}
	err = c.Do(ctx, func(t transport.TPM) error {
		rsp, err := (tpm2.ReadPublic{ObjectHandle: handle}).Execute(t)
		if err != nil {
			if isMissingHandle(err) {
				return fmt.Errorf("0x%08x: %w", uint32(handle), ErrKeyNotFound)
			}
			return err
		}
		public, err := rsp.OutPublic.Contents()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadResponse, err)
		}
		k.public, k.name = *public, rsp.Name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: opening key 0x%08x: %w", c.Addr(), uint32(handle), err)
	}
	if k.pub, err = SM2PublicKey(&k.public); err != nil {
		return nil, fmt.Errorf("tpm %s: key 0x%08x: %w", c.Addr(), uint32(handle), err)
	}
	return k, nil
}

// OpenKeyBlob opens a wrapped key. It is loaded into the TPM now (to fail
// early on a blob from another TPM) and again whenever the TPM lost it.
func OpenKeyBlob(ctx context.Context, c *Conn, blob *KeyBlob) (*Key, error) {
	caps, err := c.capabilities(ctx)
	if err != nil {
		return nil, err
	}
	if err := caps.CheckSM2(); err != nil {
		return nil, fmt.Errorf("tpm %s: %w", c.Addr(), err)
	}
	public, err := tpm2.Unmarshal[tpm2.TPMTPublic](blob.Public)
	if err != nil {
		return nil, fmt.Errorf("key blob: public area: %w", err)
	}
	pub, err := SM2PublicKey(public)
	if err != nil {
		return nil, fmt.Errorf("key blob: %w", err)
	}
	name, err := tpm2.ObjectName(public)
	if err != nil {
		return nil, fmt.Errorf("key blob: name: %w", err)
	}
	k := &Key{conn: c, blob: blob, public: *public, name: *name, pub: pub, hashAlg: caps.SignHashAlg()}
	err = c.Do(ctx, func(t transport.TPM) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.ensureLoaded(t)
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: loading key blob: %w", c.Addr(), err)
	}
	return k, nil
}

// PublicKey returns the key's public half.
func (k *Key) PublicKey() *gm.PublicKey { return k.pub }

// Public returns the key's TPMT_PUBLIC encoding.
func (k *Key) Public() []byte { return tpm2.Marshal(k.public) }

// Name returns the key's TPM name (nameAlg ‖ H(TPMT_PUBLIC)).
func (k *Key) Name() []byte { return append([]byte(nil), k.name.Buffer...) }

// Handle returns the persistent handle, or zero for a blob.
func (k *Key) Handle() tpm2.TPMHandle { return k.persistent }

// ensureLoaded loads the blob if the TPM does not hold it. Called with
// k.mu held, inside Conn.Do.
func (k *Key) ensureLoaded(t transport.TPM) error {
	if k.blob == nil {
		return nil
	}
	if k.loaded != 0 && k.loadedGen == k.conn.generation {
		return nil
	}
	h, err := loadBlob(t, k.blob)
	if err != nil {
		return err
	}
	k.loaded, k.loadedGen = h.Handle, k.conn.generation
	return nil
}

func (k *Key) handle() tpm2.TPMHandle {
	if k.blob != nil {
		return k.loaded
	}
	return k.persistent
}

// SignDigest signs e = SM3(Z_A ‖ M) with TPM_ALG_SM2. The signature is
// checked against the public key before it is returned.
func (k *Key) SignDigest(ctx context.Context, e gm.Digest) (gm.Signature, error) {
	var sig gm.Signature
	err := k.conn.Do(ctx, func(t transport.TPM) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		if err := k.ensureLoaded(t); err != nil {
			return err
		}
		var err error
		sig, err = signSM2(t, k.handle(), k.hashAlg, e)
		if err != nil && k.blob != nil && isMissingHandle(err) {
			// Someone flushed our transient object; load it again.
			k.loaded = 0
			if err := k.ensureLoaded(t); err != nil {
				return err
			}
			sig, err = signSM2(t, k.handle(), k.hashAlg, e)
		}
		return err
	})
	if err != nil {
		if k.persistent != 0 && isMissingHandle(err) {
			err = fmt.Errorf("0x%08x: %w", uint32(k.persistent), ErrKeyNotFound)
		}
		return gm.Signature{}, fmt.Errorf("tpm %s: SM2 sign: %w", k.conn.Addr(), err)
	}
	if !k.pub.VerifyDigest(e, sig) {
		return gm.Signature{}, fmt.Errorf("tpm %s: SM2 signature from the TPM does not verify under the key's public part", k.conn.Addr())
	}
	return sig, nil
}

// Sign signs msg under the default user id.
func (k *Key) Sign(ctx context.Context, msg []byte) (gm.Signature, error) {
	return k.SignDigest(ctx, k.pub.Digest(msg))
}

// Close flushes a loaded blob. It does not close the connection.
func (k *Key) Close(ctx context.Context) error {
	if k.blob == nil {
		return nil
	}
	return k.conn.DoOnce(ctx, func(t transport.TPM) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.loaded != 0 && k.loadedGen == k.conn.generation {
			flush(t, k.loaded)
		}
		k.loaded = 0
		return nil
	})
}

// TPM constants for the hand-marshalled TPM2_Sign.
const (
	stNoSessions = 0x8001
	stSessions   = 0x8002
	stHashCheck  = 0x8024
	ccSign       = 0x0000015D
	rsPW         = 0x40000009
	rhNull       = 0x40000007
	algSM2       = 0x001B
)

// signCommand marshals TPM2_Sign with scheme TPM_ALG_SM2, which go-tpm
// v0.9.8 cannot express: the scheme is TPMT_SIG_SCHEME {sigAlg, hashAlg}
// (the layout of ECDSA's), the key authorised by an empty password, and
// a NULL hash-check ticket (the key is unrestricted).
func signCommand(h tpm2.TPMHandle, hashAlg tpm2.TPMAlgID, e gm.Digest) []byte {
	b := make([]byte, 0, 80)
	b = binary.BigEndian.AppendUint16(b, stSessions)
	b = binary.BigEndian.AppendUint32(b, 0) // size, patched below
	b = binary.BigEndian.AppendUint32(b, ccSign)
	b = binary.BigEndian.AppendUint32(b, uint32(h))
	// Authorisation area: one password session with an empty password.
	b = binary.BigEndian.AppendUint32(b, 9)
	b = binary.BigEndian.AppendUint32(b, rsPW)
	b = binary.BigEndian.AppendUint16(b, 0) // nonceCaller
	b = append(b, 0)                        // session attributes
	b = binary.BigEndian.AppendUint16(b, 0) // hmac (the password)
	// Parameters.
	b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
	b = append(b, e[:]...)
	b = binary.BigEndian.AppendUint16(b, algSM2)
	b = binary.BigEndian.AppendUint16(b, uint16(hashAlg))
	b = binary.BigEndian.AppendUint16(b, stHashCheck)
	b = binary.BigEndian.AppendUint32(b, rhNull)
	b = binary.BigEndian.AppendUint16(b, 0)
	binary.BigEndian.PutUint32(b[2:6], uint32(len(b)))
	return b
}

// parseSignResponse reads the TPMT_SIGNATURE of an SM2 signature:
// sigAlg, hash, then r and s as TPM2B_ECC_PARAMETERs.
func parseSignResponse(rsp []byte) (gm.Signature, error) {
	var sig gm.Signature
	if len(rsp) < 10 {
		return sig, fmt.Errorf("%w: %d-byte response", ErrBadResponse, len(rsp))
	}
	tag := binary.BigEndian.Uint16(rsp[0:2])
	size := binary.BigEndian.Uint32(rsp[2:6])
	rc := binary.BigEndian.Uint32(rsp[6:10])
	if int(size) != len(rsp) {
		return sig, fmt.Errorf("%w: size field %d, got %d bytes", ErrBadResponse, size, len(rsp))
	}
	if rc != 0 {
		return sig, tpm2.TPMRC(rc)
	}
	body := rsp[10:]
	if tag == stSessions {
		if len(body) < 4 {
			return sig, fmt.Errorf("%w: no parameter size", ErrBadResponse)
		}
		n := binary.BigEndian.Uint32(body)
		body = body[4:]
		if uint64(n) > uint64(len(body)) {
			return sig, fmt.Errorf("%w: parameter size %d exceeds response", ErrBadResponse, n)
		}
		body = body[:n]
	} else if tag != stNoSessions {
		return sig, fmt.Errorf("%w: tag 0x%04x", ErrBadResponse, tag)
	}
	if len(body) < 4 {
		return sig, fmt.Errorf("%w: short signature", ErrBadResponse)
	}
	if alg := binary.BigEndian.Uint16(body); alg != algSM2 {
		return sig, fmt.Errorf("%w: signature algorithm 0x%04x, want TPM_ALG_SM2", ErrBadResponse, alg)
	}
	body = body[4:] // sigAlg, hashAlg
	for i := 0; i < 2; i++ {
		if len(body) < 2 {
			return sig, fmt.Errorf("%w: short signature", ErrBadResponse)
		}
		n := int(binary.BigEndian.Uint16(body))
		body = body[2:]
		if n > 32 || n > len(body) {
			return sig, fmt.Errorf("%w: signature component of %d bytes", ErrBadResponse, n)
		}
		copy(sig[32*i+32-n:32*(i+1)], body[:n])
		body = body[n:]
	}
	return sig, nil
}

func signSM2(t transport.TPM, h tpm2.TPMHandle, hashAlg tpm2.TPMAlgID, e gm.Digest) (gm.Signature, error) {
	rsp, err := t.Send(signCommand(h, hashAlg, e))
	if err != nil {
		return gm.Signature{}, err
	}
	return parseSignResponse(rsp)
}
