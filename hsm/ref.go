package hsm

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// FirmwarePCR is the PCR into which booted firmware extends the
// measurement of the root slot it booted (the slot's SM3 digest, see
// package images) before anything unseals a key; tpm-sealed keys are
// sealed to it unless the reference names other PCRs. PCR 15 is in the
// operating system's range, is used by neither platform firmware nor
// Linux, and cannot be reset without a reboot; like systemd's PCR 15 it
// records the identity of the root filesystem. PCRs 8, 9 and 11 are left
// to a bootloader or unified-kernel-image stub on hardware.
const FirmwarePCR = 15

// Ref is a parsed key reference: the one string a config file or an
// operator uses to name a key. The forms:
//
//	tpm:handle=0x81000010        SM2 key at a TPM persistent handle
//	tpm:handle=auto              (generate only) the first free handle from 0x81000010
//	tpm:blob=/path/key.tpmkey    SM2 key wrapped by the TPM, in a file
//	tpm-sealed:/path/key.sealed  software key sealed to PCRs (default FirmwarePCR)
//	tpm-sealed:/path/key.sealed?pcrs=7,15
//	dev:/path/key.dev            passphrase-encrypted development key
//	pkcs11:token=T;object=L?module-path=/usr/lib/x.so&pin-source=env:HSM_PIN&mechanism=0x80000D01
//
// The pkcs11 form follows RFC 7512's path and query attributes; besides
// token and object it accepts slot-id in the path, and in the query
// module-path (required), pin-source (env:NAME or file:/path; default no
// PIN), mechanism (the vendor SM2 signing mechanism, required to sign),
// and keygen-mechanism (default CKM_EC_KEY_PAIR_GEN on the SM2 curve).
type Ref struct {
	Kind Kind
	// TPM: a persistent handle, or AutoHandle, or a blob Path.
	Handle     tpm2.TPMHandle
	AutoHandle bool
	// Path of the key file (tpm blob, tpm-sealed, dev).
	Path string
	// PCRs a tpm-sealed key is sealed to when generated.
	PCRs []uint
	// PKCS11 is set for KindPKCS11.
	PKCS11 *PKCS11Ref
}

// PKCS11Ref locates a key in a PKCS#11 token.
type PKCS11Ref struct {
	Module          string // module-path: the vendor's PKCS#11 library
	Token           string // token label
	SlotID          *uint  // slot-id, instead of or besides the token label
	Object          string // CKA_LABEL of the key pair
	PINSource       string // "env:NAME", "file:/path" or ""
	Mechanism       uint   // vendor SM2 signing mechanism; 0 = not configured
	KeygenMechanism uint   // 0 = CKM_EC_KEY_PAIR_GEN
}

// ParseRef parses a key reference.
func ParseRef(s string) (Ref, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, fmt.Errorf("%w %q: want kind:..., with kind one of %v", ErrBadRef, s, Kinds())
	}
	r := Ref{Kind: Kind(kind)}
	bad := func(format string, args ...any) (Ref, error) {
		return Ref{}, fmt.Errorf("%w %q: %s", ErrBadRef, s, fmt.Sprintf(format, args...))
	}
	switch r.Kind {
	case KindTPM:
		key, val, ok := strings.Cut(rest, "=")
		if !ok {
			return bad("want tpm:handle=0x81xxxxxx, tpm:handle=auto or tpm:blob=/path")
		}
		switch key {
		case "handle":
			if val == "auto" {
				r.AutoHandle = true
				break
			}
			h, err := strconv.ParseUint(val, 0, 32)
			if err != nil {
				return bad("handle %q is not a number", val)
			}
			if h < 0x81000000 || h > 0x817FFFFF {
				return bad("handle 0x%08x is outside the owner persistent range 0x81000000-0x817FFFFF", h)
			}
			r.Handle = tpm2.TPMHandle(h)
		case "blob":
			if val == "" {
				return bad("empty blob path")
			}
			r.Path = val
		default:
			return bad("unknown tpm attribute %q (want handle or blob)", key)
		}
	case KindTPMSealed:
		path, query, _ := strings.Cut(rest, "?")
		if path == "" {
			return bad("empty path")
		}
		r.Path = path
		if query != "" {
			q, err := url.ParseQuery(query)
			if err != nil {
				return bad("query: %v", err)
			}
			for k := range q {
				if k != "pcrs" {
					return bad("unknown attribute %q (want pcrs)", k)
				}
			}
			pcrs, err := parsePCRs(q.Get("pcrs"))
			if err != nil {
				return bad("%v", err)
			}
			r.PCRs = pcrs
		}
	case KindDev:
		if rest == "" {
			return bad("empty path")
		}
		r.Path = rest
	case KindPKCS11:
		p, err := parsePKCS11(rest)
		if err != nil {
			return bad("%v", err)
		}
		r.PKCS11 = p
	default:
		return bad("unknown custody kind %q (want one of %v)", kind, Kinds())
	}
	return r, nil
}

func parsePCRs(s string) ([]uint, error) {
	if s == "" {
		return nil, fmt.Errorf("empty PCR list")
	}
	var out []uint
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 8)
		if err != nil || n > 23 {
			return nil, fmt.Errorf("PCR %q is not a number in 0-23", f)
		}
		out = append(out, uint(n))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func parsePKCS11(rest string) (*PKCS11Ref, error) {
	path, query, _ := strings.Cut(rest, "?")
	p := &PKCS11Ref{}
	for _, attr := range strings.Split(path, ";") {
		if attr == "" {
			continue
		}
		k, v, ok := strings.Cut(attr, "=")
		if !ok {
			return nil, fmt.Errorf("path attribute %q lacks '='", attr)
		}
		v, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %v", k, err)
		}
		switch k {
		case "token":
			p.Token = v
		case "object":
			p.Object = v
		case "slot-id":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("slot-id %q is not a number", v)
			}
			id := uint(n)
			p.SlotID = &id
		default:
			return nil, fmt.Errorf("unknown path attribute %q (want token, object, slot-id)", k)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("query: %v", err)
	}
	for k, vs := range q {
		v := vs[0]
		switch k {
		case "module-path":
			p.Module = v
		case "pin-source":
			if v != "" && !strings.HasPrefix(v, "env:") && !strings.HasPrefix(v, "file:") {
				return nil, fmt.Errorf("pin-source %q: want env:NAME or file:/path", v)
			}
			p.PINSource = v
		case "mechanism", "keygen-mechanism":
			n, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				return nil, fmt.Errorf("%s %q is not a number", k, v)
			}
			if k == "mechanism" {
				p.Mechanism = uint(n)
			} else {
				p.KeygenMechanism = uint(n)
			}
		default:
			return nil, fmt.Errorf("unknown query attribute %q (want module-path, pin-source, mechanism, keygen-mechanism)", k)
		}
	}
	if p.Module == "" {
		return nil, fmt.Errorf("module-path is required")
	}
	if p.Object == "" {
		return nil, fmt.Errorf("object (the key label) is required")
	}
	if p.Token == "" && p.SlotID == nil {
		return nil, fmt.Errorf("token or slot-id is required")
	}
	return p, nil
}

// String renders the reference in its canonical form.
func (r Ref) String() string {
	switch r.Kind {
	case KindTPM:
		if r.Path != "" {
			return "tpm:blob=" + r.Path
		}
		if r.AutoHandle {
			return "tpm:handle=auto"
		}
		return fmt.Sprintf("tpm:handle=0x%08x", uint32(r.Handle))
	case KindTPMSealed:
		if len(r.PCRs) == 0 {
			return "tpm-sealed:" + r.Path
		}
		pcrs := make([]string, len(r.PCRs))
		for i, p := range r.PCRs {
			pcrs[i] = strconv.FormatUint(uint64(p), 10)
		}
		return "tpm-sealed:" + r.Path + "?pcrs=" + strings.Join(pcrs, ",")
	case KindDev:
		return "dev:" + r.Path
	case KindPKCS11:
		p := r.PKCS11
		if p == nil {
			return "pkcs11:"
		}
		var path []string
		if p.Token != "" {
			path = append(path, "token="+url.PathEscape(p.Token))
		}
		if p.SlotID != nil {
			path = append(path, "slot-id="+strconv.FormatUint(uint64(*p.SlotID), 10))
		}
		path = append(path, "object="+url.PathEscape(p.Object))
		q := url.Values{}
		q.Set("module-path", p.Module)
		if p.PINSource != "" {
			q.Set("pin-source", p.PINSource)
		}
		if p.Mechanism != 0 {
			q.Set("mechanism", fmt.Sprintf("0x%08x", p.Mechanism))
		}
		if p.KeygenMechanism != 0 {
			q.Set("keygen-mechanism", fmt.Sprintf("0x%08x", p.KeygenMechanism))
		}
		return "pkcs11:" + strings.Join(path, ";") + "?" + q.Encode()
	}
	return string(r.Kind) + ":"
}
