package boot

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"

	"hallmark/gm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/builder"
)

// Options configure [Main]. Zero adapter fields select the stand-ins.
// The configuration itself is part of the image: Main reads it from
// ConfigPath in the initramfs.
type Options struct {
	Log *slog.Logger
	// RunNode starts the node; nil runs the configured node command with
	// ExecNode.
	RunNode NodeRunner
	// Unsealer, given the TPM, returns what unseals the device's keys;
	// nil selects TPMUnsealer.
	Unsealer func(transport.TPM) Unsealer
	// Counter, given the TPM, returns the anti-rollback counter; nil
	// selects TPMCounter at Config.CounterIndex.
	Counter func(transport.TPM) images.RollbackCounter
}

// Main is the init's entry point: it runs the boot sequence and never
// returns. A failure before the node is healthy is final for this boot: a
// trial slot reboots (the bootloader then falls back), a committed slot
// stays halted with the reason on the console for the operator.
func Main(opts Options) {
	log := opts.Log
	if err := mountEarly(); err != nil {
		log.Error("early mounts failed", "err", err)
	}
	cfg, err := LoadConfig(ConfigPath, opts.RunNode != nil)
	if err != nil {
		log.Error("boot failed", "err", err)
		idle(log)
	}
	r := &runner{opts: opts, cfg: cfg, log: log}
	err = r.run(context.Background())
	switch {
	case errors.Is(err, errShutdown):
		log.Info("powering off")
		halt(log, false)
	case r.trial:
		log.Error("trial boot failed; rebooting so the bootloader falls back to the previous slot", "slot", r.slot, "err", err)
		halt(log, true)
	default:
		log.Error("boot failed; the device needs service", "slot", r.slot, "err", err)
	}
	idle(log)
}

// idle keeps PID 1 alive (its exit would panic the kernel).
func idle(log *slog.Logger) {
	log.Info("init idle")
	for {
		time.Sleep(time.Hour)
	}
}

var errShutdown = errors.New("boot: shutdown requested")

// runner holds the state of one boot.
type runner struct {
	opts    Options
	cfg     Config
	log     *slog.Logger
	slot    bootctl.Slot
	trial   bool
	release images.Release

	mu        sync.Mutex
	bootctl   *os.File
	committed bool
	counter   images.RollbackCounter
}

func (r *runner) run(ctx context.Context) error {
	cfg := r.cfg
	log := r.log
	rel, err := readRelease()
	if err != nil {
		return err
	}
	r.release = rel
	log.Info("hallmark init starting", "version", rel.Version, "securityVersion", rel.SecurityVersion, "hardware", rel.Hardware, "pid", os.Getpid())

	if err := loadModules(log, builder.ModulesList); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("boot: read kernel command line: %w", err)
	}
	r.slot, err = BootedSlot(string(cmdline))
	if err != nil {
		return err
	}
	parts, err := findPartitions(ctx, []string{images.PartBootctl, r.slot.PartName(), images.PartData}, time.Duration(cfg.DeviceWait))
	if err != nil {
		return err
	}
	r.bootctl, err = os.OpenFile(parts[images.PartBootctl], os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("boot: open boot control: %w", err)
	}
	st, err := bootctl.NewStore(r.bootctl, 0).Load()
	if err != nil {
		return err
	}
	r.trial = st.IsTrial(r.slot)
	rec := st.Record(r.slot)
	log.Info("booted slot", "slot", r.slot, "trial", r.trial, "state", rec.State, "recorded", rec.Firmware.Version)
	if rec.State != bootctl.Good && rec.State != bootctl.Trial {
		return fmt.Errorf("boot: booted slot %s is %s in boot control", r.slot, rec.State)
	}

	// Measure before anything else touches a key.
	start := time.Now()
	m, err := measureSlot(ctx, parts[r.slot.PartName()], int64(rec.Firmware.SlotSize))
	if err != nil {
		return err
	}
	tpm, tpmPath, err := OpenTPM(cfg.TPMDevices)
	if err != nil {
		return err
	}
	defer tpm.Close()
	if err := ExtendMeasurement(tpm, images.MeasurementPCR, m); err != nil {
		return err
	}
	pcr, err := ReadPCR(tpm, images.MeasurementPCR)
	if err != nil {
		return err
	}
	log.Info("measured slot", "slot", r.slot, "digest", m.String(), "pcr", images.MeasurementPCR,
		"sha256", fmt.Sprintf("%x", pcr), "fresh", fmt.Sprintf("%x", images.PredictPCR(crypto.SHA256, m)),
		"tpm", tpmPath, "took", time.Since(start).Round(time.Millisecond).String())
	if m != rec.Firmware.SlotDigest {
		return fmt.Errorf("boot: slot %s content digest %s differs from its record %s (corrupt or altered)", r.slot, m, rec.Firmware.SlotDigest)
	}

	// The release must be for this device and not older than its floor.
	if rel.Hardware != st.Hardware {
		return fmt.Errorf("boot: release is for hardware %q, device is %q", rel.Hardware, st.Hardware)
	}
	r.counter = r.counterFor(tpm, cfg)
	floor, err := r.counter.Read(ctx)
	if err != nil {
		return err
	}
	log.Info("anti-rollback check", "securityVersion", rel.SecurityVersion, "floor", floor)
	if rel.SecurityVersion < floor {
		return fmt.Errorf("boot: release security version %d is below the device's anti-rollback floor %d", rel.SecurityVersion, floor)
	}

	if err := mountData(parts[images.PartData], cfg.DataMountOptions); err != nil {
		return err
	}
	if err := r.network(ctx, cfg); err != nil {
		return err
	}
	unsealer := r.unsealerFor(tpm)
	if err := unsealKeys(ctx, log, unsealer); err != nil {
		return err
	}

	// Start and supervise the node.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run := r.opts.RunNode
	if run == nil {
		reaper := NewReaper()
		go reaper.Run(ctx)
		run = ExecNode(reaper, cfg.Node.Command, cfg.Node.Env, time.Duration(cfg.Node.StopTimeout))
	}
	sup := &supervisor{
		log:         log,
		run:         run,
		env:         NodeEnv{Slot: r.slot.String(), Trial: r.trial, Release: rel, DataDir: DataDir, KeysDir: KeysDir},
		backoffMin:  time.Duration(cfg.BackoffMin),
		backoffMax:  time.Duration(cfg.BackoffMax),
		commitAfter: time.Duration(cfg.CommitAfter),
		onHealthy:   func() { r.commit(ctx) },
	}
	supDone := make(chan error, 1)
	go func() { supDone <- sup.loop(ctx) }()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	defer signal.Stop(stop)
	var trialTimeout <-chan time.Time
	if r.trial {
		trialTimeout = time.After(time.Duration(cfg.TrialTimeout))
	}
	for {
		select {
		case s := <-stop:
			log.Info("shutdown requested", "signal", s.String())
			cancel()
			<-supDone
			return errShutdown
		case <-trialTimeout:
			if r.isCommitted() {
				continue
			}
			cancel()
			<-supDone
			return fmt.Errorf("boot: node did not come up healthy within %v", time.Duration(cfg.TrialTimeout))
		case err := <-supDone:
			return err
		}
	}
}

func (r *runner) counterFor(tpm transport.TPM, cfg Config) images.RollbackCounter {
	if r.opts.Counter != nil {
		return r.opts.Counter(tpm)
	}
	return TPMCounter{TPM: tpm, Index: tpm2.TPMHandle(cfg.CounterIndex)}
}

func (r *runner) unsealerFor(tpm transport.TPM) Unsealer {
	if r.opts.Unsealer != nil {
		return r.opts.Unsealer(tpm)
	}
	return TPMUnsealer{TPM: tpm}
}

func (r *runner) isCommitted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.committed
}

// commit runs once the node is healthy: a trial slot becomes the active
// slot, and the anti-rollback counter rises to this release. The counter
// moves only after the commit is on disk: were it raised first, a power
// cut in between would leave only a slot the counter forbids.
func (r *runner) commit(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	store := bootctl.NewStore(r.bootctl, 0)
	st, err := store.Load()
	if err != nil {
		r.log.Error("commit: read boot control", "err", err)
		return
	}
	next, changed, err := st.Commit(r.slot)
	if err != nil {
		r.log.Error("commit", "err", err)
		return
	}
	if changed {
		if _, err := store.Save(st, next); err != nil {
			r.log.Error("commit: write boot control", "err", err)
			return
		}
		r.log.Info("slot committed", "slot", r.slot, "version", r.release.Version)
	}
	r.committed = true
	if err := r.counter.Advance(ctx, r.release.SecurityVersion); err != nil {
		r.log.Error("advance anti-rollback counter", "err", err)
		return
	}
	v, err := r.counter.Read(ctx)
	if err != nil {
		r.log.Error("read anti-rollback counter", "err", err)
		return
	}
	r.log.Info("anti-rollback counter", "value", v)
}

func readRelease() (images.Release, error) {
	b, err := os.ReadFile(images.ReleasePath)
	if err != nil {
		return images.Release{}, fmt.Errorf("boot: release: %w", err)
	}
	var rel images.Release
	if err := strictJSON(b, &rel); err != nil {
		return rel, fmt.Errorf("boot: release %s: %w", images.ReleasePath, err)
	}
	return rel, nil
}

// measureSlot returns SM3 over the first size bytes of the slot device.
func measureSlot(ctx context.Context, dev string, size int64) (gm.Digest, error) {
	f, err := os.Open(dev)
	if err != nil {
		return gm.Digest{}, fmt.Errorf("boot: open slot: %w", err)
	}
	defer f.Close()
	d, err := images.DigestRange(ctx, f, 0, size, nil)
	if err != nil {
		return gm.Digest{}, fmt.Errorf("boot: measure slot %s: %w", dev, err)
	}
	return d, nil
}

func (r *runner) network(ctx context.Context, cfg Config) error {
	b, err := os.ReadFile(NetworkFile)
	if errors.Is(err, os.ErrNotExist) {
		r.log.Warn("no network configuration; only loopback is up", "file", NetworkFile)
		return configureNetwork(ctx, r.log, NetworkConfig{}, 0)
	}
	if err != nil {
		return fmt.Errorf("boot: network config: %w", err)
	}
	nc, err := ParseNetworkConfig(b)
	if err != nil {
		return err
	}
	return configureNetwork(ctx, r.log, nc, time.Duration(cfg.DeviceWait))
}

// unsealKeys unseals every *.sealed file of the data partition's keys
// directory into the tmpfs KeysDir. A key that does not unseal (sealed to
// another firmware, or on another TPM) is reported and skipped: the node
// then runs without it and says so.
func unsealKeys(ctx context.Context, log *slog.Logger, u Unsealer) error {
	if err := os.MkdirAll(KeysDir, 0o700); err != nil {
		return fmt.Errorf("boot: keys directory: %w", err)
	}
	entries, err := os.ReadDir(SealedKeysDir)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("no sealed keys", "dir", SealedKeysDir)
		return nil
	}
	if err != nil {
		return fmt.Errorf("boot: sealed keys: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(strings.ToLower(e.Name()), ".sealed") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		name := strings.TrimSuffix(strings.ToLower(n), ".sealed")
		blob, err := os.ReadFile(filepath.Join(SealedKeysDir, n))
		if err != nil {
			return fmt.Errorf("boot: sealed key %s: %w", n, err)
		}
		secret, err := u.Unseal(ctx, blob)
		if err != nil {
			log.Warn("key not unsealed", "key", name, "err", err)
			continue
		}
		if err := os.WriteFile(filepath.Join(KeysDir, name), secret, 0o600); err != nil {
			return fmt.Errorf("boot: write unsealed key %s: %w", name, err)
		}
		id := gm.SM3(secret)
		log.Info("key unsealed", "key", name, "sm3", fmt.Sprintf("%x", id[:8]))
	}
	return nil
}

// WriteConfig renders a configuration as the JSON the init reads.
func WriteConfig(c Config) ([]byte, error) {
	if err := c.withDefaults().Validate(len(c.Node.Command) > 0); err != nil {
		return nil, err
	}
	return json.MarshalIndent(c, "", "  ")
}
