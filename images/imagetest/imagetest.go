// Package imagetest provides inputs for image builds in tests: a fake x86
// kernel, a fake module tree, and static binaries built from Go source.
package imagetest

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"hallmark/gm"
	"hallmark/images"
	"hallmark/images/builder"
)

// FakeKernel returns bytes that carry an x86 setup header with the given
// version string, padded to size bytes. It is enough for the builder; it
// does not boot.
func FakeKernel(version string, size int) []byte {
	if size < 0x1000 {
		size = 0x1000
	}
	k := make([]byte, size)
	copy(k[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(k[0x20e:], 0x100) // version at 0x300
	copy(k[0x300:], version+" (fake@hallmark) #1 SMP\x00")
	for i := 0x400; i < size; i++ {
		k[i] = byte(i * 7)
	}
	return k
}

// FakeModules writes a module tree with modules.dep under dir/<kver> and
// returns its path: a.ko needs b.ko which needs c.ko; d.ko stands alone;
// "builtin_mod" is built in.
func FakeModules(t testing.TB, kver string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), kver)
	files := map[string]string{
		"kernel/x/a.ko":    "module a",
		"kernel/x/b.ko":    "module b",
		"kernel/y/c-1.ko":  "module c-1",
		"kernel/y/d.ko":    "module d",
		"modules.builtin":  "kernel/z/builtin_mod.ko\n",
		"modules.dep":      "kernel/x/a.ko: kernel/x/b.ko kernel/y/c-1.ko\nkernel/x/b.ko: kernel/y/c-1.ko\nkernel/y/c-1.ko:\nkernel/y/d.ko:\n",
		"modules.order":    "",
		"modules.alias":    "",
		"unrelated/readme": "x",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// BuildStatic compiles a Go main package (a directory or import path of
// this module, or a single source given as source text) into a static
// binary and returns its path.
func BuildStatic(t testing.TB, pkg string, source string) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "bin")
	target := pkg
	if source != "" {
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(source), 0o644); err != nil {
			t.Fatal(err)
		}
		target = filepath.Join(dir, "main.go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*60e9)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, target)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", target, err, b)
	}
	return out
}

// HelloInit is the source of a trivial static program.
const HelloInit = `package main

import "fmt"

func main() { fmt.Println("hello from a test init") }
`

// SmallSpec returns a build spec with fake inputs written under t's
// temporary directory; init is the path of a static binary.
func SmallSpec(t testing.TB, init string) builder.Spec {
	t.Helper()
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, FakeKernel("6.1.0-test", 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	return builder.Spec{
		Version:         "1.0.0",
		SecurityVersion: 1,
		Hardware:        "hallmark-test",
		Kernel:          kernel,
		ModulesDir:      FakeModules(t, "6.1.0-test"),
		Modules:         []string{"a", "d"},
		Init:            init,
		Files:           []builder.File{{Path: "/etc/hallmark/init.json", Data: []byte(`{"test":true}`)}},
		Cmdline:         "console=ttyS0",
		SlotSize:        4 << 20,
		DataSize:        2 << 20,
	}
}

// Built is the result of [Build].
type Built struct {
	Image, Slot string
	Manifest    *images.Manifest
}

// Build builds spec into t's temporary directory.
func Build(t testing.TB, spec builder.Spec) Built {
	t.Helper()
	dir := t.TempDir()
	out := builder.Output{Image: filepath.Join(dir, "hallmark.img"), Slot: filepath.Join(dir, "hallmark.slot")}
	m, err := builder.Build(context.Background(), spec, out, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return Built{Image: out.Image, Slot: out.Slot, Manifest: m}
}

// Keys returns n fresh software release keys.
func Keys(t testing.TB, n int) []*gm.PrivateKey {
	t.Helper()
	out := make([]*gm.PrivateKey, n)
	for i := range out {
		k, err := gm.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = k
	}
	return out
}

// Policy returns a policy trusting keys with the given threshold.
func Policy(threshold int, keys ...*gm.PrivateKey) images.Policy {
	p := images.Policy{Threshold: threshold}
	for _, k := range keys {
		p.Keys = append(p.Keys, k.PublicKey())
	}
	return p
}

// Sign signs m with every key.
func Sign(t testing.TB, m *images.Manifest, keys ...*gm.PrivateKey) {
	t.Helper()
	for _, k := range keys {
		if err := m.Sign(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
}
