package boot

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"golang.org/x/sys/unix"

	"hallmark/gm"
	"hallmark/hsm/tpm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/builder"
)

// Options configure [Main]. The configuration itself is part of the
// image: Main reads it from ConfigPath in the initramfs.
type Options struct {
	Log *slog.Logger
	// RunNode starts the node; nil runs the configured node command with
	// ExecNode.
	RunNode NodeRunner
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

	tpmDevice string // the TPM the slot was measured into
	mu        sync.Mutex
	bootctl   *os.File
	committed bool
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
	conn, err := dialTPM(ctx, cfg.TPMDevices)
	if err != nil {
		return err
	}
	r.tpmDevice = conn.Addr()
	floor, err := r.measure(ctx, conn, m, start)
	conn.Close()
	if err != nil {
		return err
	}
	if m != rec.Firmware.SlotDigest {
		return fmt.Errorf("boot: slot %s content digest %s differs from its record %s (corrupt or altered)", r.slot, m, rec.Firmware.SlotDigest)
	}

	// The release must be for this device and not older than its floor.
	if rel.Hardware != st.Hardware {
		return fmt.Errorf("boot: release is for hardware %q, device is %q", rel.Hardware, st.Hardware)
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
	if err := os.MkdirAll(KeyDir, 0o700); err != nil {
		return fmt.Errorf("boot: key directory: %w", err)
	}

	// Start and supervise the node.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Updates.Listen != "" {
		r.startUpdateService(ctx, m, parts[images.PartData])
	}
	run := r.opts.RunNode
	if run == nil {
		var stopReaper func()
		run, stopReaper = execRunner(cfg.Node)
		defer stopReaper()
	}
	sup := &supervisor{
		log:         log,
		run:         run,
		env:         NodeEnv{Slot: r.slot.String(), Trial: r.trial, Release: rel, DataDir: DataDir, KeyDir: KeyDir, TPM: r.tpmDevice},
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

// startUpdateService runs the update service (updates.go) beside the
// node. It is not essential to the boot: if it cannot listen, the node
// still runs and the console says why updates cannot carry keys.
func (r *runner) startUpdateService(ctx context.Context, m gm.Digest, dataPart string) {
	policy, err := r.cfg.Updates.Policy()
	if err != nil {
		r.log.Error("update service not started", "err", err)
		return
	}
	ln, err := net.Listen("tcp", r.cfg.Updates.Listen)
	if err != nil {
		r.log.Error("update service not started", "err", err)
		return
	}
	disk, err := wholeDisk(dataPart)
	if err != nil {
		r.log.Warn("update service cannot install updates", "err", err)
	}
	k := &updateService{log: r.log.With("part", "updates"), keyDir: KeyDir, tpm: r.tpmDevice, counterIndex: r.counterIndex(),
		policy: policy, release: r.release, measurement: m,
		disk: disk, booted: r.slot, committed: r.isCommitted, tmpDir: "/tmp"}
	go k.serve(ctx, ln)
}

// measure extends the measurement m of the booted slot into
// images.MeasurementPCR, reads the PCR back for the console, and returns
// the anti-rollback floor.
func (r *runner) measure(ctx context.Context, conn *tpm.Conn, m gm.Digest, start time.Time) (uint64, error) {
	if err := tpm.ExtendPCR(ctx, conn, images.MeasurementPCR, m[:]); err != nil {
		return 0, fmt.Errorf("boot: measure slot %s: %w", r.slot, err)
	}
	pcr, err := tpm.ReadPCRs(ctx, conn, []uint{images.MeasurementPCR})
	if err != nil {
		return 0, fmt.Errorf("boot: %w", err)
	}
	r.log.Info("measured slot", "slot", r.slot, "digest", m.String(), "pcr", images.MeasurementPCR,
		"sha256", fmt.Sprintf("%x", pcr[0]), "fresh", fmt.Sprintf("%x", images.PredictPCR(crypto.SHA256, m)),
		"tpm", conn.Addr(), "took", time.Since(start).Round(time.Millisecond).String())
	floor, err := tpm.ReadCounter(ctx, conn, r.counterIndex())
	if err != nil {
		return 0, fmt.Errorf("boot: anti-rollback counter: %w", err)
	}
	return floor, nil
}

func (r *runner) counterIndex() tpm2.TPMHandle { return tpm2.TPMHandle(r.cfg.CounterIndex) }

// dialTPM connects to the first of devices that exists.
func dialTPM(ctx context.Context, devices []string) (*tpm.Conn, error) {
	var errs []error
	for _, d := range devices {
		c, err := tpm.Dial(ctx, tpm.Config{Addr: d})
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("boot: no TPM: %w", errors.Join(errs...))
}

// advanceCounter raises the anti-rollback counter to the release's
// security version and returns its value. Its first increment on this
// TPM may start above the version (tpm.ErrOvershoot): the TPM once held a
// counter with a higher value. Flashing with the TPM at hand initialises
// the counter and refuses such a release before writing it; a device
// flashed without its TPM meets the jump here.
func (r *runner) advanceCounter(ctx context.Context) (uint64, error) {
	conn, err := tpm.Dial(ctx, tpm.Config{Addr: r.tpmDevice})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	k, err := tpm.DefineCounter(ctx, conn, r.counterIndex())
	if err != nil {
		return 0, err
	}
	return k.Advance(ctx, r.release.SecurityVersion)
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
	if r.release.SecurityVersion == 0 {
		r.log.Info("release has security version 0; anti-rollback counter left alone")
		return
	}
	v, err := r.advanceCounter(ctx)
	if errors.Is(err, tpm.ErrOvershoot) {
		r.log.Error("anti-rollback counter started above this release: this TPM once held a higher counter, and from the next boot the device refuses every release below it; provision it with a release of at least that security version",
			"value", v, "securityVersion", r.release.SecurityVersion, "err", err)
		return
	}
	if err != nil {
		r.log.Error("advance anti-rollback counter", "err", err)
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

// WriteConfig renders a configuration as the JSON the init reads.
func WriteConfig(c Config) ([]byte, error) {
	if err := c.withDefaults().Validate(len(c.Node.Command) > 0); err != nil {
		return nil, err
	}
	return json.MarshalIndent(c, "", "  ")
}
