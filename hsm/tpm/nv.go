package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Errors from NV counters.
var (
	// ErrRollback: a version below the counter's value was offered.
	ErrRollback = errors.New("version is below the anti-rollback counter")
	// ErrNoCounter: no NV counter is defined at the index.
	ErrNoCounter = errors.New("no NV counter at this index")
	// ErrOvershoot: the counter's first increment started above the
	// requested version, because this TPM once held a counter with a
	// higher value (a counter starts above every value any counter here
	// has held). Versions on this TPM must start above the reported value.
	ErrOvershoot = errors.New("NV counter started above the requested version")
	// ErrNotCounter: the index exists but is not a counter.
	ErrNotCounter = errors.New("NV index is not a counter")
)

// FirmwareCounterIndex is the NV index that holds the minimum acceptable
// firmware version. Owner NV indices run from 0x01000000 to 0x013FFFFF;
// Hallmark uses 0x01500000 upward, outside the ranges the TCG registry
// assigns to platform and endorsement certificates.
const FirmwareCounterIndex tpm2.TPMHandle = 0x01500010

// MaxAdvanceSteps bounds the increments one Advance performs. Each
// increment is an NV write, and NV wears and is rate-limited on real
// TPMs: version numbers for anti-rollback should be small consecutive
// security versions, not build numbers.
const MaxAdvanceSteps = 1024

// Counter is a monotonic TPM NV counter (TPMA_NV_COUNTER) used as an
// anti-rollback floor. Its properties, from the TPM itself: it only grows,
// by one per increment; it survives restarts; it cannot be read until the
// first increment; undefining and redefining it does not reset it (a
// counter's first increment starts above the highest value any counter
// on this TPM has held).
type Counter struct {
	conn  *Conn
	index tpm2.TPMHandle
}

// DefineCounter defines an owner-authorised counter at index, or opens
// the counter already there.
func DefineCounter(ctx context.Context, c *Conn, index tpm2.TPMHandle) (*Counter, error) {
	if uint32(index)>>24 != uint32(tpm2.TPMHTNVIndex) {
		return nil, fmt.Errorf("0x%08x is not an NV index handle", uint32(index))
	}
	k := &Counter{conn: c, index: index}
	err := c.Do(ctx, func(t transport.TPM) error {
		if _, err := k.readPublic(t); err == nil {
			return nil
		} else if !errors.Is(err, ErrNoCounter) {
			return err
		}
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(c.ownerAuth)},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex: index,
				NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{
					OwnerWrite: true,
					OwnerRead:  true,
					AuthRead:   true,
					NoDA:       true,
					NT:         tpm2.TPMNTCounter,
				},
				DataSize: 8,
			}),
		}.Execute(t)
		if errors.Is(err, tpm2.TPMRCNVDefined) {
			return nil // defined by a repeated attempt
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: defining NV counter 0x%08x: %w", c.Addr(), uint32(index), err)
	}
	return k, nil
}

// OpenCounter opens the counter at index; it fails with ErrNoCounter if
// none is defined.
func OpenCounter(ctx context.Context, c *Conn, index tpm2.TPMHandle) (*Counter, error) {
	k := &Counter{conn: c, index: index}
	err := c.Do(ctx, func(t transport.TPM) error {
		_, err := k.readPublic(t)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm %s: NV counter 0x%08x: %w", c.Addr(), uint32(index), err)
	}
	return k, nil
}

// UndefineCounter removes the counter at index. Defining it again does
// not reset its value.
func UndefineCounter(ctx context.Context, c *Conn, index tpm2.TPMHandle) error {
	k := &Counter{conn: c, index: index}
	err := c.DoOnce(ctx, func(t transport.TPM) error {
		name, err := k.readPublic(t)
		if err != nil {
			return err
		}
		_, err = tpm2.NVUndefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(c.ownerAuth)},
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: name},
		}.Execute(t)
		return err
	})
	if err != nil {
		return fmt.Errorf("tpm %s: undefining NV counter 0x%08x: %w", c.Addr(), uint32(index), err)
	}
	return nil
}

// Index returns the counter's NV index.
func (k *Counter) Index() tpm2.TPMHandle { return k.index }

// readPublic checks the index is a counter and returns its current name
// (which changes when it is first written).
func (k *Counter) readPublic(t transport.TPM) (tpm2.TPM2BName, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: k.index}.Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return tpm2.TPM2BName{}, ErrNoCounter
		}
		return tpm2.TPM2BName{}, err
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	if pub.Attributes.NT != tpm2.TPMNTCounter {
		return tpm2.TPM2BName{}, ErrNotCounter
	}
	return rsp.NVName, nil
}

func (k *Counter) read(t transport.TPM) (uint64, error) {
	name, err := k.readPublic(t)
	if err != nil {
		return 0, err
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(k.conn.ownerAuth)},
		NVIndex:    tpm2.NamedHandle{Handle: k.index, Name: name},
		Size:       8,
	}.Execute(t)
	if errors.Is(err, tpm2.TPMRCNVUninitialized) {
		// Never incremented: no floor yet.
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("%w: counter of %d bytes", ErrBadResponse, len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// Read returns the counter's value; zero if it was never incremented.
func (k *Counter) Read(ctx context.Context) (uint64, error) {
	var v uint64
	err := k.conn.Do(ctx, func(t transport.TPM) error {
		var err error
		v, err = k.read(t)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("tpm %s: reading NV counter 0x%08x: %w", k.conn.Addr(), uint32(k.index), err)
	}
	return v, nil
}

// Check returns nil if version is acceptable (not below the counter),
// else an error wrapping ErrRollback.
func (k *Counter) Check(ctx context.Context, version uint64) error {
	cur, err := k.Read(ctx)
	if err != nil {
		return err
	}
	if version < cur {
		return fmt.Errorf("%w: version %d < counter %d", ErrRollback, version, cur)
	}
	return nil
}

// Advance raises the counter to at least version by incrementing it, and
// returns the new value. A version below the counter is refused with
// ErrRollback. The result can exceed version only on a counter's first
// increment, which starts above any value a counter on this TPM has held;
// Advance then reports ErrOvershoot with the value.
// Each increment runs at most once: after a broken connection the loop
// reads the counter again instead of repeating an increment that may have
// happened.
func (k *Counter) Advance(ctx context.Context, version uint64) (uint64, error) {
	for steps := 0; ; steps++ {
		cur, err := k.Read(ctx)
		if err != nil {
			return 0, err
		}
		if steps > 0 && version < cur {
			return cur, fmt.Errorf("%w: counter is %d, version %d", ErrOvershoot, cur, version)
		}
		if version < cur {
			return cur, fmt.Errorf("%w: version %d < counter %d", ErrRollback, version, cur)
		}
		if cur >= version {
			return cur, nil
		}
		if (cur > 0 && version-cur > MaxAdvanceSteps) || steps > MaxAdvanceSteps {
			return cur, fmt.Errorf("tpm %s: NV counter 0x%08x: advancing from %d to %d takes more than %d increments", k.conn.Addr(), uint32(k.index), cur, version, MaxAdvanceSteps)
		}
		err = k.conn.DoOnce(ctx, func(t transport.TPM) error {
			name, err := k.readPublic(t)
			if err != nil {
				return err
			}
			_, err = tpm2.NVIncrement{
				AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(k.conn.ownerAuth)},
				NVIndex:    tpm2.NamedHandle{Handle: k.index, Name: name},
			}.Execute(t)
			return err
		})
		if err != nil && !isTransportError(err) {
			return 0, fmt.Errorf("tpm %s: incrementing NV counter 0x%08x: %w", k.conn.Addr(), uint32(k.index), err)
		}
		// On a transport error DoOnce has reconnected; the next
		// iteration reads whether the increment happened.
	}
}

// Initialize makes a counter that was never incremented hold a value: it
// increments it once and returns the result. A counter that holds a value
// is left as it is. The first value is one above the highest value any
// counter on this TPM has held (1 on a TPM that never had one), and it
// cannot be known before the increment: provisioning initialises the
// firmware counter, so that a TPM whose first value would exceed the
// release being installed is found before the release is written, rather
// than by the release's first boot.
func (k *Counter) Initialize(ctx context.Context) (uint64, error) {
	cur, err := k.Read(ctx)
	if err != nil || cur > 0 {
		return cur, err
	}
	err = k.conn.DoOnce(ctx, func(t transport.TPM) error {
		name, err := k.readPublic(t)
		if err != nil {
			return err
		}
		_, err = tpm2.NVIncrement{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(k.conn.ownerAuth)},
			NVIndex:    tpm2.NamedHandle{Handle: k.index, Name: name},
		}.Execute(t)
		return err
	})
	if err != nil && !isTransportError(err) {
		return 0, fmt.Errorf("tpm %s: initialising NV counter 0x%08x: %w", k.conn.Addr(), uint32(k.index), err)
	}
	// After a broken connection the increment may or may not have
	// happened; reading tells.
	cur, err = k.Read(ctx)
	if err == nil && cur == 0 {
		err = fmt.Errorf("tpm %s: NV counter 0x%08x still holds no value after an increment", k.conn.Addr(), uint32(k.index))
	}
	return cur, err
}

// ReadCounter returns the value of the counter at index: zero if no
// counter is defined there or it was never incremented (no floor yet).
func ReadCounter(ctx context.Context, c *Conn, index tpm2.TPMHandle) (uint64, error) {
	k, err := OpenCounter(ctx, c, index)
	if errors.Is(err, ErrNoCounter) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return k.Read(ctx)
}
