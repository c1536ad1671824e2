package xdp

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// generateArgs returns the bpf2go command line of gen.go's go:generate
// directive, so that the check below cannot drift from it.
func generateArgs(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("gen.go")
	must(t, err)
	for line := range strings.SplitSeq(string(src), "\n") {
		rest, ok := strings.CutPrefix(line, "//go:generate ")
		if !ok {
			continue
		}
		var args []string
		for i, part := range strings.Split(rest, `"`) {
			if i%2 == 1 { // inside quotes: one argument
				args = append(args, part)
				continue
			}
			args = append(args, strings.Fields(part)...)
		}
		return args
	}
	t.Fatal("gen.go has no go:generate directive")
	return nil
}

// TestGeneratedObjectIsCurrent regenerates the BPF object and its Go
// bindings into a temporary directory and requires them to equal the
// committed files: a change to filter.c without `make generate` fails here.
func TestGeneratedObjectIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerating the BPF object takes a few seconds; skipped in -short mode")
	}
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang is not installed, so the committed BPF object cannot be checked against filter.c (make deps installs it)")
	}
	args := generateArgs(t)
	// Reading the source ties this test's cached result to it.
	_, err := os.ReadFile("filter.c")
	must(t, err)
	out := t.TempDir()
	args = append(args[:len(args)-2:len(args)-2], "-output-dir", out, args[len(args)-2], args[len(args)-1])
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=xdp")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, b)
	}
	for _, name := range []string{"filter_bpfel.o", "filter_bpfel.go"} {
		want, err := os.ReadFile(filepath.Join(out, name))
		must(t, err)
		got, err := os.ReadFile(name)
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with filter.c: run `make generate` and commit the result", name)
		}
	}
}
