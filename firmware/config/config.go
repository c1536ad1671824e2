// Package config reads and checks hallmarkd's configuration file: one JSON
// document, parsed strictly (an unknown key is an error, with its path), with
// a stated default for every optional field. A configuration that cannot
// work fails at start with the field and the reason. docs/CONFIG.md is the
// reference, with an example.
package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"hallmark/gm"
	"hallmark/hsm"
)

// Config is the whole configuration of one node.
type Config struct {
	// NodeKey names the node's SM2 identity and validator key in custody:
	// an hsm reference such as "tpm:handle=0x81000010". Required.
	NodeKey string `json:"nodeKey"`
	// TPM is how to reach the TPM for tpm and tpm-sealed keys: a device
	// path or host:port (swtpm). Default "/dev/tpmrm0".
	TPM string `json:"tpm"`
	// KeyPassphraseFile holds the passphrase of a dev key. Default none.
	KeyPassphraseFile string `json:"keyPassphraseFile"`
	// Production refuses development keys. Default false.
	Production bool `json:"production"`
	// DataDir holds the store. Required.
	DataDir string `json:"dataDir"`
	// Genesis is the path of the genesis document. Required.
	Genesis string `json:"genesis"`
	Listen  Listen `json:"listen"`
	// Peers override or add peer addresses (the validator set names each
	// validator's address; a node behind NAT may be reached elsewhere).
	Peers   []Peer  `json:"peers"`
	Storage Storage `json:"storage"`
	XDP     XDP     `json:"xdp"`
	Mempool Mempool `json:"mempool"`
	Blocks  Blocks  `json:"blocks"`
	API     API     `json:"api"`
	Log     Log     `json:"log"`
	Runtime Runtime `json:"runtime"`
}

// Listen holds the addresses the node serves.
type Listen struct {
	// Peer is the QUIC address for other nodes. Default "0.0.0.0:7400".
	Peer string `json:"peer"`
	// Kiosk is the UDP address for kiosk datagrams. Default "0.0.0.0:7401".
	Kiosk string `json:"kiosk"`
	// API is the HTTP API address. Default "127.0.0.1:7402".
	API string `json:"api"`
	// Metrics is a separate HTTP address for /metrics only. Default ""
	// (metrics are served by the API listener only).
	Metrics string `json:"metrics"`
}

// Peer is an address for a node, by its key id (hex) or public key (hex).
type Peer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// Storage tunes the store.
type Storage struct {
	// Window is how many recent blocks keep their full body. Default 1000.
	Window uint64 `json:"window"`
	// Archive keeps every body. Default false.
	Archive bool `json:"archive"`
	// ScrubInterval is the pause between scrub passes; "0s" disables
	// scrubbing. Default "6h".
	ScrubInterval *Duration `json:"scrubInterval"`
	// ScrubBytesPerSecond paces scrub reads. Default 8 MiB/s.
	ScrubBytesPerSecond int64 `json:"scrubBytesPerSecond"`
}

// XDP configures the kiosk fast path.
type XDP struct {
	// Interface to attach the XDP program to; "" runs the user-space
	// twin. Default "".
	Interface string `json:"interface"`
	// RatePerSec and Burst shape each source address's token bucket.
	// Defaults 2000 and 4000; RatePerSec 0 disables the limiter.
	RatePerSec *uint64 `json:"ratePerSec"`
	Burst      uint64  `json:"burst"`
	// MaxAge and MaxFuture bound kiosk transaction timestamps around the
	// node's clock. Defaults "60s" and "5s".
	MaxAge    Duration `json:"maxAge"`
	MaxFuture Duration `json:"maxFuture"`
}

// Mempool bounds the pool of pending transactions.
type Mempool struct {
	// MaxTxs and MaxBytes bound the pool; beyond them submissions get a
	// busy answer. Defaults 20000 and 64 MiB.
	MaxTxs   int   `json:"maxTxs"`
	MaxBytes int64 `json:"maxBytes"`
	// VerifiedCache is how many verified transactions are remembered so
	// that none is verified twice. Default 200000.
	VerifiedCache int `json:"verifiedCache"`
	// Workers verify signatures in parallel. Default 0: one per core.
	Workers int `json:"workers"`
}

// Blocks tunes block building.
type Blocks struct {
	// IdleWait is how long a leader with no pending transactions waits
	// before proposing an empty block. Default "500ms"; the node caps it at
	// half the chain's base round timeout, so that a proposal always
	// arrives in time.
	IdleWait Duration `json:"idleWait"`
	// MinInterval is the least time between a block's timestamp and its
	// child's proposal, unless a full block is pending. Default "25ms";
	// "0s" proposes at network speed (lowest latency, most blocks).
	MinInterval *Duration `json:"minInterval"`
}

// API tunes the HTTP API.
type API struct {
	// MaxBodyBytes bounds a request body. Default 2 MiB (a transaction
	// with a 1 MiB payload, base64 in JSON).
	MaxBodyBytes int64 `json:"maxBodyBytes"`
	// AuthWindow is how far a signed request's timestamp may be from the
	// node's clock. Default "60s".
	AuthWindow Duration `json:"authWindow"`
	// Pprof serves Go's profiler under /debug/pprof/ on the API listener
	// (for diagnosis; keep the API on a private address). Default false.
	Pprof bool `json:"pprof"`
}

// Runtime tunes the Go runtime's memory management (hallmarkd applies it
// at start, before the node opens anything; the GOGC and GOMEMLIMIT
// environment variables are overridden).
type Runtime struct {
	// GCPercent is the collector's heap growth target (Go's GOGC): a
	// collection starts when the heap has grown this many percent over
	// what the last one left live. -1 collects only near MemoryLimit,
	// which must then be set. Default 200.
	GCPercent *int `json:"gcPercent"`
	// MemoryLimit is a soft limit, in bytes, on the memory the Go runtime
	// holds (heap, stacks, its own metadata; not the store's memory-mapped
	// file): near it the collector runs as often as it must, spending at
	// most about half the CPU, and beyond that the limit gives way. 0
	// means no limit. Default 160 MiB.
	MemoryLimit *int64 `json:"memoryLimit"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `json:"level"`
	// Format is text or json. Default "text".
	Format string `json:"format"`
}

// Duration is a time.Duration written as a Go duration string ("250ms").
type Duration time.Duration

// UnmarshalJSON parses a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"250ms\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. \"250ms\", \"6h\")", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Error is a configuration error: the field (as a JSON path) and why.
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "config: " + e.Reason
	}
	return fmt.Sprintf("config: %s: %s", e.Field, e.Reason)
}

func fieldErr(field, format string, args ...any) *Error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// MaxFileBytes bounds a configuration file.
const MaxFileBytes = 1 << 20

// Load reads, parses, completes and checks the configuration at path.
// Relative paths inside it are taken relative to the file's directory.
// Overrides (command-line flags) change the parsed file before it is
// checked, so a field they set need not be valid, or present, in the file.
func Load(path string, overrides ...func(*Config)) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, MaxFileBytes)
	}
	c, err := Parse(data, overrides...)
	if err != nil {
		return nil, err
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

// Parse parses a configuration document strictly, fills in defaults,
// applies the overrides and checks the result.
func Parse(data []byte, overrides ...func(*Config)) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(data, err)
	}
	if dec.More() {
		return nil, &Error{Reason: "trailing data after the configuration object"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Reason: "trailing data after the configuration object"}
	}
	c.setDefaults()
	for _, o := range overrides {
		o(&c)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeError turns a JSON error into one that names the field.
func decodeError(data []byte, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fieldErr(te.Field, "want %s, got JSON %s", te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := position(data, se.Offset)
		return &Error{Reason: fmt.Sprintf("invalid JSON at line %d, column %d: %v", line, col, se)}
	}
	if strings.HasPrefix(err.Error(), "json: unknown field ") {
		if path := unknownPath(data, reflect.TypeFor[Config](), ""); path != "" {
			return fieldErr(path, "unknown key (see docs/CONFIG.md for the keys)")
		}
		return &Error{Reason: strings.TrimPrefix(err.Error(), "json: ")}
	}
	if errors.Is(err, io.EOF) {
		return &Error{Reason: "empty file: want a JSON object"}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Reason: "invalid JSON: the document ends early"}
	}
	// Errors from our own UnmarshalJSON methods carry no path; find it.
	if path, msg := failingField(data, reflect.TypeFor[Config](), ""); path != "" {
		return fieldErr(path, "%s", msg)
	}
	return &Error{Reason: err.Error()}
}

func position(data []byte, off int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < off && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

// jsonFields maps the JSON names of a struct type's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// unknownPath finds the path of the first key in data that t does not have.
func unknownPath(data []byte, t reflect.Type, prefix string) string {
	t = deref(t)
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeFor[Duration]() {
			return ""
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			return ""
		}
		fields := jsonFields(t)
		for k, v := range m {
			ft, ok := fields[k]
			if !ok {
				// encoding/json matches keys case-insensitively; so do we.
				for name, typ := range fields {
					if strings.EqualFold(name, k) {
						ft, ok = typ, true
					}
				}
			}
			if !ok {
				return join(prefix, k)
			}
			if p := unknownPath(v, ft, join(prefix, k)); p != "" {
				return p
			}
		}
	case reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(data, &items) != nil {
			return ""
		}
		for i, it := range items {
			if p := unknownPath(it, t.Elem(), prefix+"["+strconv.Itoa(i)+"]"); p != "" {
				return p
			}
		}
	}
	return ""
}

// failingField finds the first field whose value does not decode into its
// type and returns its path and the error.
func failingField(data []byte, t reflect.Type, prefix string) (string, string) {
	t = deref(t)
	if t.Kind() == reflect.Struct && t != reflect.TypeFor[Duration]() {
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			return "", ""
		}
		fields := jsonFields(t)
		for k, v := range m {
			for name, ft := range fields {
				if strings.EqualFold(name, k) {
					if p, msg := failingField(v, ft, join(prefix, name)); p != "" {
						return p, msg
					}
				}
			}
		}
		return "", ""
	}
	if t.Kind() == reflect.Slice {
		var items []json.RawMessage
		if json.Unmarshal(data, &items) != nil {
			return prefix, "want an array"
		}
		for i, it := range items {
			if p, msg := failingField(it, t.Elem(), prefix+"["+strconv.Itoa(i)+"]"); p != "" {
				return p, msg
			}
		}
		return "", ""
	}
	v := reflect.New(t)
	if err := json.Unmarshal(data, v.Interface()); err != nil {
		return prefix, err.Error()
	}
	return "", ""
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// Defaults, as docs/CONFIG.md states them.
const (
	DefaultTPM                 = "/dev/tpmrm0"
	DefaultPeerListen          = "0.0.0.0:7400"
	DefaultKioskListen         = "0.0.0.0:7401"
	DefaultAPIListen           = "127.0.0.1:7402"
	DefaultWindow              = 1000
	DefaultScrubInterval       = 6 * time.Hour
	DefaultScrubBytesPerSecond = 8 << 20
	DefaultRatePerSec          = 2000
	DefaultBurst               = 4000
	DefaultMaxAge              = 60 * time.Second
	DefaultMaxFuture           = 5 * time.Second
	DefaultMempoolTxs          = 20_000
	DefaultMempoolBytes        = 64 << 20
	DefaultVerifiedCache       = 200_000
	DefaultIdleWait            = 500 * time.Millisecond
	DefaultMinInterval         = 25 * time.Millisecond
	DefaultMaxBodyBytes        = 2 << 20
	DefaultAuthWindow          = 60 * time.Second
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "text"
	DefaultGCPercent           = 200
	DefaultMemoryLimit         = 160 << 20
)

// Bounds of the runtime section. Below MinGCPercent the collector runs
// so often that it costs more than it saves. The memory limit must leave
// room for what the collector cannot free: the node's own working set
// (about 60 to 75 MiB of live heap at saturation on the benchmark
// cluster) and a full mempool (up to mempool.maxBytes), so it must be at
// least MinMemoryLimit and at least mempool.maxBytes plus LimitHeadroom.
const (
	MinGCPercent   = 25
	MaxGCPercent   = 10_000
	MinMemoryLimit = 128 << 20
	LimitHeadroom  = 96 << 20
)

func (c *Config) setDefaults() {
	set := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	set(&c.TPM, DefaultTPM)
	set(&c.Listen.Peer, DefaultPeerListen)
	set(&c.Listen.Kiosk, DefaultKioskListen)
	set(&c.Listen.API, DefaultAPIListen)
	if c.Storage.Window == 0 {
		c.Storage.Window = DefaultWindow
	}
	if c.Storage.ScrubInterval == nil {
		d := Duration(DefaultScrubInterval)
		c.Storage.ScrubInterval = &d
	}
	if c.Storage.ScrubBytesPerSecond == 0 {
		c.Storage.ScrubBytesPerSecond = DefaultScrubBytesPerSecond
	}
	if c.XDP.RatePerSec == nil {
		r := uint64(DefaultRatePerSec)
		c.XDP.RatePerSec = &r
	}
	if c.XDP.Burst == 0 {
		c.XDP.Burst = DefaultBurst
	}
	if c.XDP.MaxAge == 0 {
		c.XDP.MaxAge = Duration(DefaultMaxAge)
	}
	if c.XDP.MaxFuture == 0 {
		c.XDP.MaxFuture = Duration(DefaultMaxFuture)
	}
	if c.Mempool.MaxTxs == 0 {
		c.Mempool.MaxTxs = DefaultMempoolTxs
	}
	if c.Mempool.MaxBytes == 0 {
		c.Mempool.MaxBytes = DefaultMempoolBytes
	}
	if c.Mempool.VerifiedCache == 0 {
		c.Mempool.VerifiedCache = DefaultVerifiedCache
	}
	if c.Blocks.IdleWait == 0 {
		c.Blocks.IdleWait = Duration(DefaultIdleWait)
	}
	if c.Blocks.MinInterval == nil {
		d := Duration(DefaultMinInterval)
		c.Blocks.MinInterval = &d
	}
	if c.API.MaxBodyBytes == 0 {
		c.API.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.API.AuthWindow == 0 {
		c.API.AuthWindow = Duration(DefaultAuthWindow)
	}
	set(&c.Log.Level, DefaultLogLevel)
	set(&c.Log.Format, DefaultLogFormat)
	if c.Runtime.GCPercent == nil {
		v := DefaultGCPercent
		c.Runtime.GCPercent = &v
	}
	if c.Runtime.MemoryLimit == nil {
		v := int64(DefaultMemoryLimit)
		c.Runtime.MemoryLimit = &v
	}
}

// Validate checks every field and returns the first problem as an *Error.
func (c *Config) Validate() error {
	if c.NodeKey == "" {
		return fieldErr("nodeKey", "required: the hsm reference of the node's key, e.g. \"tpm:handle=0x81000010\"")
	}
	ref, err := hsm.ParseRef(c.NodeKey)
	if err != nil {
		return fieldErr("nodeKey", "%v", err)
	}
	if c.Production && ref.Kind == hsm.KindDev {
		return fieldErr("nodeKey", "a development key cannot be used with \"production\": true")
	}
	if c.DataDir == "" {
		return fieldErr("dataDir", "required: the directory that holds the store")
	}
	if c.Genesis == "" {
		return fieldErr("genesis", "required: the path of the genesis document")
	}
	for _, a := range []struct {
		field, addr string
		optional    bool
	}{
		{"listen.peer", c.Listen.Peer, false},
		{"listen.kiosk", c.Listen.Kiosk, false},
		{"listen.api", c.Listen.API, false},
		{"listen.metrics", c.Listen.Metrics, true},
	} {
		if a.optional && a.addr == "" {
			continue
		}
		if err := checkListen(a.addr); err != nil {
			return fieldErr(a.field, "%v", err)
		}
	}
	for i, p := range c.Peers {
		f := fmt.Sprintf("peers[%d]", i)
		if _, err := p.KeyID(); err != nil {
			return fieldErr(f+".id", "%v", err)
		}
		if _, _, err := net.SplitHostPort(p.Address); err != nil {
			return fieldErr(f+".address", "%q: %v", p.Address, err)
		}
	}
	if c.Storage.ScrubInterval.D() < 0 {
		return fieldErr("storage.scrubInterval", "must not be negative")
	}
	if c.Storage.ScrubBytesPerSecond < 0 {
		return fieldErr("storage.scrubBytesPerSecond", "must not be negative")
	}
	if c.XDP.MaxAge.D() < time.Second || c.XDP.MaxFuture.D() < 0 {
		return fieldErr("xdp.maxAge", "the timestamp window must be at least 1s back and not negative ahead")
	}
	if *c.XDP.RatePerSec > 0 && c.XDP.Burst < 1 {
		return fieldErr("xdp.burst", "must be at least 1 when the rate limiter is on")
	}
	if c.Mempool.MaxTxs < 1 {
		return fieldErr("mempool.maxTxs", "must be at least 1")
	}
	if c.Mempool.MaxBytes < 1<<20 {
		return fieldErr("mempool.maxBytes", "must be at least 1 MiB (a transaction may carry a 1 MiB payload)")
	}
	if c.Mempool.VerifiedCache < 1000 {
		return fieldErr("mempool.verifiedCache", "must be at least 1000")
	}
	if c.Mempool.Workers < 0 || c.Mempool.Workers > 1024 {
		return fieldErr("mempool.workers", "must be 0 (one per core) to 1024")
	}
	if d := c.Blocks.IdleWait.D(); d < time.Millisecond || d > 10*time.Second {
		return fieldErr("blocks.idleWait", "must be between 1ms and 10s")
	}
	if d := c.Blocks.MinInterval.D(); d < 0 || d > time.Second {
		return fieldErr("blocks.minInterval", "must be between 0s and 1s")
	}
	if c.API.MaxBodyBytes < 64<<10 || c.API.MaxBodyBytes > 64<<20 {
		return fieldErr("api.maxBodyBytes", "must be between 64 KiB and 64 MiB")
	}
	if d := c.API.AuthWindow.D(); d < time.Second || d > time.Hour {
		return fieldErr("api.authWindow", "must be between 1s and 1h")
	}
	if _, err := c.Log.SlogLevel(); err != nil {
		return fieldErr("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fieldErr("log.format", "%q: want text or json", c.Log.Format)
	}
	return c.Runtime.validate(c.Mempool.MaxBytes)
}

func (r Runtime) validate(mempoolBytes int64) error {
	gc, limit := *r.GCPercent, *r.MemoryLimit
	if gc != -1 && (gc < MinGCPercent || gc > MaxGCPercent) {
		return fieldErr("runtime.gcPercent", "%d: want -1 (collect only near runtime.memoryLimit) or %d to %d", gc, MinGCPercent, MaxGCPercent)
	}
	if gc == -1 && limit == 0 {
		return fieldErr("runtime.gcPercent", "-1 needs a runtime.memoryLimit: without either the heap grows without bound")
	}
	if limit < 0 || (limit > 0 && limit < MinMemoryLimit) {
		return fieldErr("runtime.memoryLimit", "%d bytes: want 0 (no limit) or at least %d (128 MiB)", limit, MinMemoryLimit)
	}
	// A full mempool is live heap the collector cannot free: a limit
	// below it plus the node's own working set would have the node
	// collecting without end.
	if need := mempoolBytes + LimitHeadroom; limit > 0 && limit < need {
		return fieldErr("runtime.memoryLimit", "%d bytes is below mempool.maxBytes plus 96 MiB (%d): a full mempool would leave the collector no room", limit, need)
	}
	return nil
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %v", addr, err)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("%q: listen on an IP address, not a name", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// KeyID returns the peer's key id: the id field is either a 32-byte key id
// or a 64-byte public key, in hex.
func (p Peer) KeyID() (gm.KeyID, error) {
	var id gm.KeyID
	switch len(p.ID) {
	case 64:
		if err := id.UnmarshalText([]byte(p.ID)); err != nil {
			return id, fmt.Errorf("%q is not a hex key id: %v", p.ID, err)
		}
		return id, nil
	case 128, 130:
		raw, err := hex.DecodeString(p.ID)
		if err != nil {
			return id, fmt.Errorf("%q is not a hex public key", p.ID)
		}
		key, err := gm.ParsePublicKey(raw)
		if err != nil {
			return id, err
		}
		return key.ID(), nil
	}
	return id, fmt.Errorf("%q: want a 64-hex-digit key id or a 128-hex-digit public key", p.ID)
}

// SlogLevel returns the log level.
func (l Log) SlogLevel() (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", l.Level)
	}
	return lv, nil
}

// NewLogger returns the logger the configuration asks for, writing to w.
func (l Log) NewLogger(w io.Writer) *slog.Logger {
	lv, _ := l.SlogLevel()
	opts := &slog.HandlerOptions{Level: lv}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// resolvePaths makes relative paths relative to dir.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.Genesis)
	abs(&c.KeyPassphraseFile)
}

// Encode writes the configuration as indented JSON (defaults included).
func (c *Config) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
