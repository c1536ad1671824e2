package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// ErrUnreachable is returned when no TPM answers at the configured address.
var ErrUnreachable = errors.New("no TPM reachable")

// DefaultDevice is the kernel's resource-managed TPM device.
const DefaultDevice = "/dev/tpmrm0"

// maxResponse bounds a TPM response; real responses are a few KiB.
const maxResponse = 64 << 10

// Config says how to reach a TPM.
type Config struct {
	// Addr is a device path ("/dev/tpmrm0", "/dev/tpm0") or the
	// host:port of a TPM command channel such as swtpm's data port
	// (optionally written "tcp://host:port"). Empty means DefaultDevice.
	Addr string
	// FlushOnOpen flushes every transient object and loaded session when
	// a connection is (re)opened. A TPM without a resource manager (swtpm,
	// /dev/tpm0) keeps objects loaded across connections and has only a
	// few slots; a process that exclusively owns the TPM must clean up
	// after its predecessors. Nil means: flush unless Addr is a
	// resource-managed device (/dev/tpmrm*), where flushing is pointless.
	FlushOnOpen *bool
	// RetryFor bounds how long a (re)connection keeps trying when the
	// caller's context has no earlier deadline. Zero means 5 seconds.
	RetryFor time.Duration
	// CommandTimeout bounds one call's work on the TPM when the caller's
	// context has no deadline. Zero means one minute.
	CommandTimeout time.Duration
	// OwnerAuth is the owner hierarchy's authorisation value, needed to
	// make keys persistent, evict them and define NV counters. Empty on a
	// fresh TPM.
	OwnerAuth []byte
	// Logger receives reconnection events. Nil discards them.
	Logger *slog.Logger
}

// Conn is a connection to one TPM that survives the TPM going away: when
// a command fails because the transport broke (swtpm restarted, socket
// reset), the connection is redialled with back-off and, for idempotent
// work submitted through [Conn.Do], the work runs again. Commands are
// serialised; a Conn is safe for concurrent use.
type Conn struct {
	addr      string
	tcp       bool
	flush     bool
	retryFor  time.Duration
	cmdLimit  time.Duration
	log       *slog.Logger
	ownerAuth []byte

	capsMu sync.Mutex
	caps   *Capabilities // queried once; a TPM's algorithms do not change

	mu         sync.Mutex
	tr         *recorder // nil when not connected
	generation uint64    // incremented on every successful (re)dial
	closed     bool
}

// Dial connects to the TPM described by cfg, retrying until ctx ends or
// cfg.RetryFor passes. The returned error wraps ErrUnreachable and names
// the address when nothing answers.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultDevice
	}
	tcp := !strings.HasPrefix(addr, "/")
	addr = strings.TrimPrefix(addr, "tcp://")
	flush := tcp || !strings.HasPrefix(addr, "/dev/tpmrm")
	if cfg.FlushOnOpen != nil {
		flush = *cfg.FlushOnOpen
	}
	c := &Conn{addr: addr, tcp: tcp, flush: flush, retryFor: cfg.RetryFor, log: cfg.Logger,
		ownerAuth: append([]byte(nil), cfg.OwnerAuth...)}
	if c.retryFor <= 0 {
		c.retryFor = 5 * time.Second
	}
	if c.cmdLimit = cfg.CommandTimeout; c.cmdLimit <= 0 {
		c.cmdLimit = time.Minute
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.redial(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Addr returns the address the connection dials.
func (c *Conn) Addr() string { return c.addr }

// Generation counts successful (re)connections. Transient objects loaded
// under an older generation are gone: a TPM restart or a flush on open
// removed them.
func (c *Conn) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.generation
}

// capabilities returns the TPM's algorithms, asking it the first time.
func (c *Conn) capabilities(ctx context.Context) (Capabilities, error) {
	c.capsMu.Lock()
	defer c.capsMu.Unlock()
	if c.caps != nil {
		return *c.caps, nil
	}
	caps, err := QueryCapabilities(ctx, c)
	if err != nil {
		return Capabilities{}, err
	}
	c.caps = &caps
	return caps, nil
}

// Close closes the connection. Later calls fail.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.tr == nil {
		return nil
	}
	err := c.tr.Close()
	c.tr = nil
	return err
}

// Do runs fn with exclusive use of the TPM. If the transport breaks while
// fn runs, Do reconnects (with back-off, honouring ctx) and runs fn once
// more, so fn must be safe to repeat: it must not depend on transient
// handles from an earlier call, and a repeated effect must be harmless.
func (c *Conn) Do(ctx context.Context, fn func(t transport.TPM) error) error {
	return c.do(ctx, fn, true, false)
}

// DoOnce is Do without the repetition, for work that must not happen
// twice (PCR extends, NV increments, evictions). It checks the connection
// with a harmless command first, so a TPM that restarted since the last
// call is redialled before fn runs. If the transport breaks while fn runs,
// DoOnce reconnects but returns the error: fn may have taken effect.
func (c *Conn) DoOnce(ctx context.Context, fn func(t transport.TPM) error) error {
	return c.do(ctx, fn, false, false)
}

// doSensitive is Do for commands that carry secrets (Create with
// sensitive data, Unseal): afterwards it overwrites the command and
// response buffers that passed through the transport.
func (c *Conn) doSensitive(ctx context.Context, fn func(t transport.TPM) error) error {
	return c.do(ctx, fn, true, true)
}

func (c *Conn) do(ctx context.Context, fn func(t transport.TPM) error, repeat, sensitive bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if err := c.ensure(ctx); err != nil {
			return err
		}
		if !repeat && attempt == 0 {
			// fn must not run twice, so first make sure the connection
			// is alive: a TPM restart is noticed here, by a harmless
			// command, instead of by fn.
			if err := c.run(ctx, probe); isTransportError(err) {
				c.drop()
				continue
			}
		}
		tr := c.tr
		tr.sensitive = sensitive
		err := c.run(ctx, fn)
		tr.sensitive = false
		tr.wipe()
		if !isTransportError(err) {
			return err
		}
		c.drop()
		c.log.Warn("TPM connection broke; reconnecting", "addr", c.addr, "err", err)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("tpm %s: %w (after %v)", c.addr, ctxErr, err)
		}
		if !repeat || attempt > 0 {
			// Reconnect now so the caller's next call finds a
			// working TPM, but report this failure.
			if rerr := c.redial(ctx); rerr != nil {
				return rerr
			}
			return fmt.Errorf("tpm %s: connection broke during the command: %w", c.addr, err)
		}
	}
}

func (c *Conn) ensure(ctx context.Context) error {
	if c.closed {
		return fmt.Errorf("tpm %s: connection closed", c.addr)
	}
	if c.tr != nil {
		return nil
	}
	return c.redial(ctx)
}

func (c *Conn) drop() {
	if c.tr != nil {
		_ = c.tr.Close()
		c.tr = nil
	}
}

// run executes fn with the transport's deadline tied to ctx.
func (c *Conn) run(ctx context.Context, fn func(t transport.TPM) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cmdLimit)
		defer cancel()
	}
	stop := c.tr.bind(ctx)
	defer stop()
	return fn(c.tr)
}

// redial opens a new transport, retrying with exponential back-off until
// ctx ends or retryFor passes.
func (c *Conn) redial(ctx context.Context) error {
	deadline := time.Now().Add(c.retryFor)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	delay := 25 * time.Millisecond
	var lastErr error
	for {
		tr, err := c.open(ctx)
		if err != nil && !c.tcp && errors.Is(err, fs.ErrNotExist) {
			// No such device: waiting will not make one appear.
			return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.addr, err)
		}
		if err == nil {
			c.tr = tr
			c.generation++
			if err := c.prepare(ctx); err != nil {
				c.drop()
				if !isTransportError(err) {
					return fmt.Errorf("tpm %s: preparing connection: %w", c.addr, err)
				}
				lastErr = err
			} else {
				return nil
			}
		} else {
			lastErr = err
		}
		if ctx.Err() != nil || time.Now().Add(delay).After(deadline) {
			return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.addr, lastErr)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w at %s: %v (%v)", ErrUnreachable, c.addr, lastErr, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

func (c *Conn) open(ctx context.Context) (*recorder, error) {
	if c.tcp {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		nc, err := d.DialContext(dctx, "tcp", c.addr)
		if err != nil {
			return nil, err
		}
		return &recorder{inner: &tcpTransport{conn: nc}, conn: nc}, nil
	}
	dev, err := linuxtpm.Open(c.addr)
	if err != nil {
		return nil, err
	}
	return &recorder{inner: dev}, nil
}

// prepare readies a fresh connection: it starts the TPM if nobody has
// (a simulator without startup flags), and flushes leftovers when asked.
func (c *Conn) prepare(ctx context.Context) error {
	// A TPM without a resource manager may accept the connection and not
	// serve it while another client holds it (swtpm serves one at a
	// time): give up on it after the retry budget.
	ctx, cancel := context.WithTimeout(ctx, c.retryFor)
	defer cancel()
	stop := c.tr.bind(ctx)
	defer stop()
	err := probe(c.tr)
	if isTransportError(err) && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		return &transportError{err: fmt.Errorf("the TPM accepted the connection but did not answer within %v (swtpm serves one client at a time: is another process connected?): %w", c.retryFor, err)}
	}
	if errors.Is(err, tpm2.TPMRCInitialize) {
		if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(c.tr); err != nil {
			return fmt.Errorf("TPM2_Startup: %w", err)
		}
	} else if err != nil {
		return err
	}
	if !c.flush {
		return nil
	}
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		handles, err := listHandles(c.tr, uint32(ht)<<24)
		if err != nil {
			return err
		}
		for _, h := range handles {
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(c.tr); err != nil && isTransportError(err) {
				return err
			}
			c.log.Debug("flushed leftover TPM handle", "addr", c.addr, "handle", fmt.Sprintf("0x%08x", uint32(h)))
		}
	}
	return nil
}

// probe is a harmless command that tells whether the TPM answers.
func probe(t transport.TPM) error {
	_, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTManufacturer), PropertyCount: 1}.Execute(t)
	return err
}

// listHandles returns the handles in the range starting at first.
func listHandles(t transport.TPM, first uint32) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := first
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: next, PropertyCount: 64}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("listing handles from 0x%08x: %w", first, err)
		}
		hl, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("listing handles: %w", err)
		}
		for _, h := range hl.Handle {
			if uint32(h)>>24 != first>>24 {
				return out, nil
			}
			out = append(out, h)
		}
		if !rsp.MoreData || len(hl.Handle) == 0 {
			return out, nil
		}
		next = uint32(hl.Handle[len(hl.Handle)-1]) + 1
	}
}

// transportError marks a failure of the byte stream, as opposed to an
// error code returned by the TPM.
type transportError struct{ err error }

func (e *transportError) Error() string { return "TPM transport: " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func isTransportError(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

// recorder wraps a transport: it marks its failures as transport errors,
// applies context deadlines, and can wipe the buffers of sensitive
// commands.
type recorder struct {
	inner     transport.TPMCloser
	conn      net.Conn // nil for device files
	sensitive bool
	buffers   [][]byte
}

func (r *recorder) Send(cmd []byte) ([]byte, error) {
	rsp, err := r.inner.Send(cmd)
	if r.sensitive {
		r.buffers = append(r.buffers, cmd, rsp)
	}
	if err != nil {
		return nil, &transportError{err: err}
	}
	return rsp, nil
}

func (r *recorder) Close() error { return r.inner.Close() }

// wipe zeroes the recorded command and response buffers. Copies that
// go-tpm made while marshalling and parsing are beyond its reach.
func (r *recorder) wipe() {
	for _, b := range r.buffers {
		clear(b)
	}
	r.buffers = nil
}

// bind makes the socket's I/O fail when ctx ends, and returns a function
// that undoes the binding.
func (r *recorder) bind(ctx context.Context) func() {
	if r.conn == nil {
		return func() {}
	}
	if d, ok := ctx.Deadline(); ok {
		_ = r.conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = r.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		_ = r.conn.SetDeadline(time.Time{})
	}
}

// tcpTransport speaks raw TPM 2.0 command frames over TCP, as swtpm's
// data channel accepts them: a command goes out as is, and a response is
// read by the size field of its 10-byte header.
type tcpTransport struct{ conn net.Conn }

func (t *tcpTransport) Send(cmd []byte) ([]byte, error) {
	if _, err := t.conn.Write(cmd); err != nil {
		return nil, err
	}
	var hdr [10]byte
	if _, err := io.ReadFull(t.conn, hdr[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("TPM response size %d out of range", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(t.conn, rsp[10:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

func (t *tcpTransport) Close() error { return t.conn.Close() }
