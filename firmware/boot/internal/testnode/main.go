// Command testnode is the node that firmware/boot's end-to-end test puts
// into its images in place of hallmarkd. It does with keys what the node
// runtime does: it opens every *.sealed file in $HALLMARK_KEY_DIR as a
// tpm-sealed key with hsm.Open on the TPM the init measured into, and
// says on the console which opened and why the others did not. It serves
//
//	GET  /health?challenge=HEX   slot, release and, per opened key, its id,
//	                             public key and signature over the challenge
//	POST /reseal?key=K&to=T&pcr=HEX
//	                             hsm.ResealTo of key K to T for PCR 15 = HEX
//
// on :8080 and reports ready to the init. With --crash it exits at once,
// like a broken release.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"hallmark/hsm"
	"hallmark/hsm/tpm"
)

// ChallengeDomain starts every message the test node signs.
const ChallengeDomain = "hallmark/e2e-test-node/v1\x00"

type keyReport struct {
	Name      string `json:"name"`
	KeyID     string `json:"keyId"`
	PublicKey string `json:"publicKey"`
	Signature string `json:"signature,omitempty"`
}

type health struct {
	Slot    string            `json:"slot"`
	Version string            `json:"version"`
	PID     int               `json:"pid"`
	Keys    []keyReport       `json:"keys"`
	Failed  map[string]string `json:"failed"`
}

type node struct {
	keyDir string
	opts   hsm.Options
	keys   map[string]hsm.Signer
	failed map[string]string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--crash" {
		fmt.Println("test node: this release is broken on purpose; exiting")
		os.Exit(1)
	}
	n := &node{
		keyDir: os.Getenv("HALLMARK_KEY_DIR"),
		opts:   hsm.Options{TPM: tpm.Config{Addr: os.Getenv("HALLMARK_TPM")}, Production: true},
		keys:   map[string]hsm.Signer{},
		failed: map[string]string{},
	}
	n.openKeys(context.Background())
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Println("test node:", err)
		os.Exit(1)
	}
	http.HandleFunc("GET /health", n.health)
	http.HandleFunc("POST /reseal", n.reseal)
	go http.Serve(ln, nil)
	fd, _ := strconv.Atoi(os.Getenv("HALLMARK_READY_FD"))
	ready := os.NewFile(uintptr(fd), "ready")
	ready.Write([]byte("READY\n"))
	ready.Close()
	fmt.Println("test node: serving on :8080")
	select {}
}

// openKeys opens every sealed key of the key directory, as the node
// runtime opens the one its configuration names.
func (n *node) openKeys(ctx context.Context) {
	paths, _ := filepath.Glob(filepath.Join(n.keyDir, "*.sealed"))
	sort.Strings(paths)
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".sealed")
		s, err := hsm.Open(ctx, "tpm-sealed:"+p, n.opts)
		if err != nil {
			n.failed[name] = err.Error()
			fmt.Printf("test node: key %s not opened: %v\n", name, err)
			continue
		}
		n.keys[name] = s
		fmt.Printf("test node: key %s opened: id %s\n", name, s.KeyID())
	}
}

func (n *node) health(w http.ResponseWriter, r *http.Request) {
	challenge, err := hex.DecodeString(r.URL.Query().Get("challenge"))
	if err != nil {
		http.Error(w, "challenge: "+err.Error(), http.StatusBadRequest)
		return
	}
	h := health{Slot: os.Getenv("HALLMARK_SLOT"), Version: os.Getenv("HALLMARK_VERSION"), PID: os.Getpid(), Failed: n.failed}
	names := make([]string, 0, len(n.keys))
	for name := range n.keys {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := n.keys[name]
		k := keyReport{Name: name, KeyID: s.KeyID().String(), PublicKey: s.PublicKey().String()}
		if len(challenge) > 0 {
			sig, err := s.Sign(r.Context(), append([]byte(ChallengeDomain), challenge...))
			if err != nil {
				http.Error(w, "sign: "+err.Error(), http.StatusInternalServerError)
				return
			}
			k.Signature = hex.EncodeToString(sig[:])
		}
		h.Keys = append(h.Keys, k)
	}
	json.NewEncoder(w).Encode(h)
}

func (n *node) reseal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	value, err := hex.DecodeString(q.Get("pcr"))
	if err != nil {
		http.Error(w, "pcr: "+err.Error(), http.StatusBadRequest)
		return
	}
	from := "tpm-sealed:" + filepath.Join(n.keyDir, filepath.Base(q.Get("key"))+".sealed")
	to := "tpm-sealed:" + filepath.Join(n.keyDir, filepath.Base(q.Get("to"))+".sealed")
	info, err := hsm.ResealTo(r.Context(), from, to, hsm.PCRValues{hsm.FirmwarePCR: value}, n.opts)
	if err != nil {
		fmt.Printf("test node: reseal %s: %v\n", q.Get("key"), err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Printf("test node: key %s resealed to %s: id %s\n", q.Get("key"), q.Get("to"), info.KeyID)
	json.NewEncoder(w).Encode(info)
}
