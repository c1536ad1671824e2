package boot

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/flash"
)

// Sealed key files in [KeyDir] are named NAME@VERSION.sealed: the copy of
// key NAME sealed to release VERSION. A release's init configuration
// names its own copy on the node's command line (hallmarkd -node-key), and
// the update service writes the next release's copy before an update, keeping
// the running release's copy for a fallback.
const sealedSuffix = ".sealed"

// SealedKeyPath returns the path of key name's copy sealed to release
// version inside dir.
func SealedKeyPath(dir, name, version string) (string, error) {
	if err := fileSafe("key name", name); err != nil {
		return "", err
	}
	if err := fileSafe("release version", version); err != nil {
		return "", err
	}
	return filepath.Join(dir, name+"@"+version+sealedSuffix), nil
}

// fileSafe accepts what is a valid, unambiguous part of a FAT file name.
func fileSafe(what, s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("boot: %s %q: want 1 to 64 characters", what, s)
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_', c == '+':
		default:
			return fmt.Errorf("boot: %s %q: only letters, digits and . - _ + can name a key file", what, s)
		}
	}
	if s[0] == '.' {
		return fmt.Errorf("boot: %s %q must not start with a dot", what, s)
	}
	return nil
}

// UpdatesConfig configures the update service the init runs beside the
// node. It is part of the image, so the release keys it trusts are
// measured with the rest of the release.
type UpdatesConfig struct {
	// Listen is the service's TCP address, e.g. ":7409"; "" (the default)
	// runs no service.
	Listen string `json:"listen,omitempty"`
	// ReleaseKeys are the release officers' SM2 public keys (hex of the
	// 64-byte X‖Y) and Threshold how many of them must have signed a
	// release the service carries keys to.
	ReleaseKeys []string `json:"releaseKeys,omitempty"`
	Threshold   int      `json:"threshold,omitempty"`
}

// Policy returns the release trust policy the configuration names.
func (u UpdatesConfig) Policy() (images.Policy, error) {
	p := images.Policy{Threshold: u.Threshold}
	for i, h := range u.ReleaseKeys {
		b, err := hex.DecodeString(h)
		if err != nil {
			return p, fmt.Errorf("boot: config: updates.releaseKeys[%d]: %w", i, err)
		}
		k, err := gm.ParsePublicKey(b)
		if err != nil {
			return p, fmt.Errorf("boot: config: updates.releaseKeys[%d]: %w", i, err)
		}
		p.Keys = append(p.Keys, k)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("boot: config: updates: %w", err)
	}
	return p, nil
}

// Resealed describes one key the service wrote for the next release.
type Resealed struct {
	Name  string    `json:"name"`
	From  string    `json:"from"`
	To    string    `json:"to"`
	KeyID gm.KeyID  `json:"keyId"`
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// updateService is the init's update service. It carries the device's
// sealed keys from the running release to a release that is about to be
// installed: given that release's signed manifest, it checks the
// signatures against the image's trust policy, the target hardware and
// the anti-rollback counter, and then reseals every key copy of the
// running release to the PCR value the new release will produce
// (hsm.ResealTo). Only a release that may be installed on this device
// ever receives a key; the running release's copies stay for a fallback.
// It also installs such a release into the slot the device is not
// running from (flash.Update).
type updateService struct {
	log          *slog.Logger
	keyDir       string
	tpm          string // device or host:port
	counterIndex tpm2.TPMHandle
	policy       images.Policy
	release      images.Release // the running release
	measurement  gm.Digest      // of the running release

	// For installs: the disk the system booted from, the slot it runs
	// from, and whether that slot has committed in this boot (before it
	// has, the init may still write boot control itself).
	disk      string
	booted    bootctl.Slot
	committed func() bool
	tmpDir    string
	installMu sync.Mutex
}

// Errors the service returns; its handler maps them to statuses.
var (
	errNotInstallable = errors.New("release may not be installed on this device")
	errNothingToCarry = errors.New("no key is sealed to the running release")
)

// carry reseals the running release's keys for the release m describes.
func (k *updateService) carry(ctx context.Context, m *images.Manifest) ([]Resealed, error) {
	if _, err := m.Verify(k.policy); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotInstallable, err)
	}
	fw := m.Body.Firmware
	if fw.Hardware != k.release.Hardware {
		return nil, fmt.Errorf("%w: release is for hardware %q, this device is %q", errNotInstallable, fw.Hardware, k.release.Hardware)
	}
	if fw.Measurement() == k.measurement {
		return nil, fmt.Errorf("%w: it is the running release", errNotInstallable)
	}
	if fw.Version == k.release.Version {
		return nil, fmt.Errorf("%w: its version %s is the running release's, and key copies are named by version", errNotInstallable, fw.Version)
	}
	if err := fileSafe("release version", fw.Version); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotInstallable, err)
	}
	floor, err := k.floor(ctx)
	if err != nil {
		return nil, err
	}
	if fw.SecurityVersion < floor {
		return nil, fmt.Errorf("%w: security version %d is below the anti-rollback floor %d", errNotInstallable, fw.SecurityVersion, floor)
	}
	names, err := k.runningKeys()
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w (%s)", errNothingToCarry, filepath.Join(k.keyDir, "*@"+k.release.Version+sealedSuffix))
	}
	opts := hsm.Options{TPM: tpm.Config{Addr: k.tpm}, Production: true, Logger: k.log}
	var out []Resealed
	var errs []error
	for _, name := range names {
		from, _ := SealedKeyPath(k.keyDir, name, k.release.Version)
		to, _ := SealedKeyPath(k.keyDir, name, fw.Version)
		r := Resealed{Name: name, From: from, To: to, At: time.Now().UTC()}
		info, err := hsm.ResealTo(ctx, "tpm-sealed:"+from, "tpm-sealed:"+to, fw.PCRValues(), opts)
		if err != nil {
			r.Error = err.Error()
			errs = append(errs, fmt.Errorf("boot: carrying key %s to release %s: %w", name, fw.Version, err))
			k.log.Error("key not carried to the next release", "key", name, "to", fw.Version, "err", err)
		} else {
			r.KeyID = info.KeyID
			k.log.Info("key carried to the next release", "key", name, "keyId", info.KeyID.String(), "to", fw.Version,
				"securityVersion", fw.SecurityVersion, "slotDigest", fw.SlotDigest.String(), "file", to)
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// runningKeys lists the names of the keys sealed to the running release.
func (k *updateService) runningKeys() ([]string, error) {
	entries, err := os.ReadDir(k.keyDir)
	if err != nil {
		return nil, fmt.Errorf("boot: key directory: %w", err)
	}
	suffix := "@" + k.release.Version + sealedSuffix
	var names []string
	for _, e := range entries {
		// FAT folds case; compare as the file system does.
		n := e.Name()
		if e.Type().IsRegular() && len(n) > len(suffix) && strings.EqualFold(n[len(n)-len(suffix):], suffix) && !strings.HasPrefix(n, ".") {
			names = append(names, n[:len(n)-len(suffix)])
		}
	}
	sort.Strings(names)
	return names, nil
}

func (k *updateService) floor(ctx context.Context) (uint64, error) {
	conn, err := tpm.Dial(ctx, tpm.Config{Addr: k.tpm})
	if err != nil {
		return 0, fmt.Errorf("boot: anti-rollback counter: %w", err)
	}
	defer conn.Close()
	v, err := tpm.ReadCounter(ctx, conn, k.counterIndex)
	if err != nil {
		return 0, fmt.Errorf("boot: anti-rollback counter: %w", err)
	}
	return v, nil
}

// CarryPath is the update service's endpoint: POST the next release's
// signed manifest (its canonical CBOR, as "hallmarkctl image build" and
// "image sign" write it); the answer lists the keys resealed for it.
const CarryPath = "/v1/update/carry-keys"

// InstallPath is the update service's install endpoint: POST a
// multipart/form-data body with the part "manifest" (the signed manifest)
// followed by the part "slot" (the release's slot payload, NAME.slot).
// The service writes it into the slot the device is not running from
// with flash.Update — which checks everything flash checks before it
// writes anything, and reads the slot back — and marks it to be tried on
// the next boot. The answer is the update's report.
const InstallPath = "/v1/update/install"

// maxUploadDrain bounds what the service reads of a refused upload.
const maxUploadDrain = 1 << 30

// Installed is the update service's answer to an install.
type Installed struct {
	Version         string        `json:"version"`
	SecurityVersion uint64        `json:"securityVersion"`
	Slot            string        `json:"slot"`
	ManifestID      gm.Digest     `json:"manifestId"`
	Signers         []gm.KeyID    `json:"signers"`
	Written         int64         `json:"written"`
	Elapsed         time.Duration `json:"elapsedNs"`
}

// install receives and installs one update.
func (k *updateService) install(ctx context.Context, r *http.Request) (*Installed, int, error) {
	if k.disk == "" {
		return nil, http.StatusNotImplemented, errors.New("this device's disk is unknown; update it offline (hallmarkctl update SLOT DEVICE)")
	}
	if !k.committed() {
		return nil, http.StatusConflict, fmt.Errorf("%w: the running release has not committed yet; wait until its node is healthy", bootctl.ErrInTrial)
	}
	if !k.installMu.TryLock() {
		return nil, http.StatusConflict, errors.New("another update is being installed")
	}
	defer k.installMu.Unlock()
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("want multipart/form-data with parts manifest and slot: %w", err)
	}
	part, err := mr.NextPart()
	if err != nil || part.FormName() != "manifest" {
		return nil, http.StatusBadRequest, errors.New("the first part must be the manifest")
	}
	enc, err := io.ReadAll(io.LimitReader(part, images.MaxManifestBytes+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading the manifest: %w", err)
	}
	m, err := images.DecodeManifest(enc)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	// Refuse an unsigned, foreign or old release before receiving its
	// payload (flash.Update checks all of it again).
	if _, err := m.Verify(k.policy); err != nil {
		return nil, http.StatusForbidden, fmt.Errorf("%w: %w", errNotInstallable, err)
	}
	fw := m.Body.Firmware
	if fw.Hardware != k.release.Hardware {
		return nil, http.StatusForbidden, fmt.Errorf("%w: release is for hardware %q, this device is %q", errNotInstallable, fw.Hardware, k.release.Hardware)
	}
	floor, err := k.floor(ctx)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	if fw.SecurityVersion < floor {
		return nil, http.StatusForbidden, fmt.Errorf("%w: %w: security version %d, floor %d", errNotInstallable, flash.ErrRollback, fw.SecurityVersion, floor)
	}
	part, err = mr.NextPart()
	if err != nil || part.FormName() != "slot" {
		return nil, http.StatusBadRequest, errors.New("the second part must be the slot payload")
	}
	tmp, err := os.CreateTemp(k.tmpDir, "update-*.slot")
	if err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("boot: update: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, io.LimitReader(part, int64(fw.SlotSize)+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("receiving the slot payload: %w", err)
	}
	if n != int64(fw.SlotSize) {
		return nil, http.StatusBadRequest, fmt.Errorf("slot payload of %d bytes, the manifest says %d", n, fw.SlotSize)
	}
	k.log.Info("update received", "version", fw.Version, "securityVersion", fw.SecurityVersion, "bytes", n)
	dev, err := flash.OpenRunningDisk(k.disk)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	defer dev.Close()
	var last flash.Phase
	rep, err := flash.Update(ctx, tmp, n, m, k.policy, dev, flash.UpdateOptions{Booted: k.booted, RollbackFloor: floor},
		func(ph flash.Phase, done, total int64) {
			if ph != last {
				last = ph
				k.log.Info("update progress", "phase", string(ph), "bytes", total)
			}
		})
	var refusedErr *flash.RefusedError
	switch {
	case errors.As(err, &refusedErr):
		return nil, http.StatusForbidden, err
	case err != nil:
		k.log.Error("update failed", "version", fw.Version, "err", err)
		return nil, http.StatusInternalServerError, err
	}
	k.log.Info("update installed; it is tried at the next boot", "version", fw.Version, "slot", rep.Slot.String(),
		"written", rep.Written, "took", rep.Elapsed.Round(time.Millisecond).String())
	return &Installed{Version: fw.Version, SecurityVersion: fw.SecurityVersion, Slot: rep.Slot.String(), ManifestID: rep.ManifestID,
		Signers: rep.Signers, Written: rep.Written, Elapsed: rep.Elapsed}, http.StatusOK, nil
}

// handler serves the update service.
func (k *updateService) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+InstallPath, func(w http.ResponseWriter, r *http.Request) {
		out, status, err := k.install(r.Context(), r)
		if err != nil && status < http.StatusInternalServerError {
			k.log.Warn("update refused", "status", status, "err", err)
		}
		if err != nil {
			// Read what the client is still sending before answering: a
			// client cut off in the middle of its upload sees a reset
			// connection instead of the reason for the refusal.
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxUploadDrain))
			http.Error(w, err.Error(), status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST "+CarryPath, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, images.MaxManifestBytes+1))
		if err != nil {
			http.Error(w, "reading the manifest: "+err.Error(), http.StatusBadRequest)
			return
		}
		m, err := images.DecodeManifest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, err := k.carry(r.Context(), m)
		status := http.StatusOK
		switch {
		case errors.Is(err, errNotInstallable):
			k.log.Warn("key carrying refused", "version", m.Body.Firmware.Version, "err", err)
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		case errors.Is(err, errNothingToCarry):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case errors.Is(err, hsm.ErrKeyExists):
			status = http.StatusConflict
		case err != nil:
			status = http.StatusInternalServerError
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(struct {
			Keys  []Resealed `json:"keys"`
			Error string     `json:"error,omitempty"`
		}{out, errString0(err)})
	})
	return mux
}

func errString0(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// serve runs the update service on ln until ctx ends.
func (k *updateService) serve(ctx context.Context, ln net.Listener) {
	srv := &http.Server{Handler: k.handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Minute}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	k.log.Info("update service listening", "addr", ln.Addr().String(), "threshold", k.policy.Threshold, "releaseKeys", len(k.policy.Keys))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		k.log.Error("update service stopped", "err", err)
	}
}
