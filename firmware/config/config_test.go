package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const minimal = `{"nodeKey": "tpm:handle=0x81000010", "dataDir": "data", "genesis": "genesis.cbor"}`

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.json")
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != filepath.Join(dir, "data") || c.Genesis != filepath.Join(dir, "genesis.cbor") {
		t.Errorf("paths not resolved against the file: %q %q", c.DataDir, c.Genesis)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"tpm", c.TPM, DefaultTPM},
		{"listen.peer", c.Listen.Peer, DefaultPeerListen},
		{"listen.kiosk", c.Listen.Kiosk, DefaultKioskListen},
		{"listen.api", c.Listen.API, DefaultAPIListen},
		{"listen.metrics", c.Listen.Metrics, ""},
		{"storage.window", c.Storage.Window, uint64(DefaultWindow)},
		{"storage.scrubInterval", c.Storage.ScrubInterval.D(), DefaultScrubInterval},
		{"xdp.ratePerSec", *c.XDP.RatePerSec, uint64(DefaultRatePerSec)},
		{"xdp.maxAge", c.XDP.MaxAge.D(), DefaultMaxAge},
		{"xdp.maxFuture", c.XDP.MaxFuture.D(), DefaultMaxFuture},
		{"mempool.maxTxs", c.Mempool.MaxTxs, DefaultMempoolTxs},
		{"mempool.maxBytes", c.Mempool.MaxBytes, int64(DefaultMempoolBytes)},
		{"blocks.idleWait", c.Blocks.IdleWait.D(), DefaultIdleWait},
		{"blocks.minInterval", c.Blocks.MinInterval.D(), DefaultMinInterval},
		{"api.maxBodyBytes", c.API.MaxBodyBytes, int64(DefaultMaxBodyBytes)},
		{"api.authWindow", c.API.AuthWindow.D(), DefaultAuthWindow},
		{"log.level", c.Log.Level, "info"},
		{"runtime.gcPercent", *c.Runtime.GCPercent, DefaultGCPercent},
		{"runtime.memoryLimit", *c.Runtime.MemoryLimit, int64(DefaultMemoryLimit)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// Explicit zeros that mean something stay.
	c2, err := Parse([]byte(`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g",
		"storage": {"scrubInterval": "0s"}, "xdp": {"ratePerSec": 0}, "blocks": {"minInterval": "0s"},
		"runtime": {"memoryLimit": 0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c2.Storage.ScrubInterval.D() != 0 || *c2.XDP.RatePerSec != 0 || c2.Blocks.MinInterval.D() != 0 || *c2.Runtime.MemoryLimit != 0 {
		t.Errorf("explicit zeros replaced: scrub %v rate %d memory limit %d", c2.Storage.ScrubInterval.D(), *c2.XDP.RatePerSec, *c2.Runtime.MemoryLimit)
	}
	// A configuration written back parses to the same thing.
	enc, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	c3, err := Parse(enc)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, enc)
	}
	if c3.Blocks.IdleWait != c.Blocks.IdleWait || c3.DataDir != c.DataDir {
		t.Error("round trip changed the configuration")
	}
}

func TestErrorsNameTheField(t *testing.T) {
	cases := []struct {
		doc, field, reason string
	}{
		{`{"dataDir": "d", "genesis": "g"}`, "nodeKey", "required"},
		{`{"nodeKey": "nope:x", "dataDir": "d", "genesis": "g"}`, "nodeKey", ""},
		{`{"nodeKey": "dev:/k.dev", "production": true, "dataDir": "d", "genesis": "g"}`, "nodeKey", "development key"},
		{`{"nodeKey": "tpm:handle=0x81000010", "genesis": "g"}`, "dataDir", "required"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d"}`, "genesis", "required"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "listen": {"api": "localhost"}}`, "listen.api", "missing port"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "listen": {"kiosk": "host.example:1"}}`, "listen.kiosk", "IP address"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "listen": {"peer": "1.2.3.4:99999"}}`, "listen.peer", "port"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "listen": {"apii": "1.2.3.4:1"}}`, "listen.apii", "unknown key"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "bogus": 1}`, "bogus", "unknown key"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "peers": [{"id": "00", "address": "a:1", "x": 2}]}`, "peers[0].x", "unknown key"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "peers": [{"id": "00", "address": "a:1"}]}`, "peers[0].id", "key id"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "mempool": {"maxTxs": "many"}}`, "mempool.maxTxs", "want int"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "mempool": {"maxBytes": 10}}`, "mempool.maxBytes", "1 MiB"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "blocks": {"idleWait": "soon"}}`, "blocks.idleWait", "not a duration"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "blocks": {"idleWait": "1m"}}`, "blocks.idleWait", "between"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "log": {"level": "loud"}}`, "log.level", "want debug"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "log": {"format": "xml"}}`, "log.format", "text or json"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "runtime": {"gcPercent": 0}}`, "runtime.gcPercent", "want -1"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "runtime": {"gcPercent": 20000}}`, "runtime.gcPercent", "25 to 10000"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "runtime": {"gcPercent": -1, "memoryLimit": 0}}`, "runtime.gcPercent", "needs a runtime.memoryLimit"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "runtime": {"memoryLimit": -5}}`, "runtime.memoryLimit", "want 0"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "runtime": {"memoryLimit": 67108864}}`, "runtime.memoryLimit", "at least 134217728"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "runtime": {"memoryLimit": "1GiB"}}`, "runtime.memoryLimit", "want int64"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", "mempool": {"maxBytes": 268435456}, "runtime": {"memoryLimit": 335544320}}`, "runtime.memoryLimit", "mempool.maxBytes plus 96 MiB"},
		{`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g"} {}`, "", "trailing data"},
		{`{"nodeKey": "tpm:handle=0x81000010",`, "", "invalid JSON"},
		{``, "", "empty"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.doc))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: error %v is not a config error", tc.doc, err)
			continue
		}
		if ce.Field != tc.field || !strings.Contains(ce.Reason, tc.reason) {
			t.Errorf("%s:\n  got field %q reason %q\n  want field %q reason containing %q", tc.doc, ce.Field, ce.Reason, tc.field, tc.reason)
		}
	}
}

func TestPeerIDForms(t *testing.T) {
	pub := "04" + strings.Repeat("0", 128)
	if _, err := (Peer{ID: pub[:130]}).KeyID(); err == nil {
		t.Error("a point not on the curve was accepted")
	}
	id := strings.Repeat("ab", 32)
	got, err := (Peer{ID: id}).KeyID()
	if err != nil || got.String() != id {
		t.Errorf("key id form: %v %v", got, err)
	}
}

// A command-line override is applied before the file is checked: the file
// need not name a key the override replaces, and a bad override is
// reported against its field.
func TestOverridesBeforeValidation(t *testing.T) {
	noKey := []byte(`{"dataDir": "d", "genesis": "g"}`)
	if _, err := Parse(noKey); err == nil || !strings.Contains(err.Error(), "nodeKey") {
		t.Fatalf("a file without nodeKey: %v", err)
	}
	c, err := Parse(noKey, func(c *Config) { c.NodeKey = "tpm-sealed:/data/keys/node@1.2.0.sealed" })
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeKey != "tpm-sealed:/data/keys/node@1.2.0.sealed" {
		t.Fatalf("nodeKey %q", c.NodeKey)
	}
	if _, err := Parse([]byte(minimal), func(c *Config) { c.NodeKey = "no-such-custody:x" }); err == nil || !strings.Contains(err.Error(), "nodeKey") {
		t.Fatalf("a bad override: %v", err)
	}
}

// The runtime section's accepted forms: collection paced by the limit
// alone, no limit, and a limit sized for a larger mempool.
func TestRuntimeSettings(t *testing.T) {
	for _, doc := range []string{
		`"runtime": {"gcPercent": -1, "memoryLimit": 268435456}`,
		`"runtime": {"gcPercent": 100, "memoryLimit": 0}`,
		`"mempool": {"maxBytes": 268435456}, "runtime": {"memoryLimit": 369098752}`,
	} {
		c, err := Parse([]byte(`{"nodeKey": "tpm:handle=0x81000010", "dataDir": "d", "genesis": "g", ` + doc + `}`))
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		enc, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(enc)
		if err != nil {
			t.Fatalf("%s: re-parse: %v", doc, err)
		}
		if *back.Runtime.GCPercent != *c.Runtime.GCPercent || *back.Runtime.MemoryLimit != *c.Runtime.MemoryLimit {
			t.Errorf("%s: round trip changed the runtime section", doc)
		}
	}
}
