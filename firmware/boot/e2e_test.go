//go:build boote2e

// The end-to-end boot test: it builds real images (Debian's kernel, the
// static hallmarkd-init as PID 1, the stand-in node of internal/testnode,
// which opens its keys with hsm.Open as the node runtime does), flashes
// one onto a disk file, and boots it in qemu (TCG) with swtpm as the TPM,
// playing the bootloader with package loader. It runs with
// `make test-boot`.
package boot

import (
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/swtpmtest"
	"hallmark/hsm/tpm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/builder"
	"hallmark/images/flash"
	"hallmark/images/imagetest"
	"hallmark/images/loader"
)

// challengeDomain is what the test node prefixes to the challenges it
// signs (internal/testnode.ChallengeDomain).
const challengeDomain = "hallmark/e2e-test-node/v1\x00"

var e2eModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "vfat", "nls_cp437", "nls_ascii", "nls_utf8"}

const e2eHardware = "hallmark-qemu-x86_64"

type e2eEnv struct {
	kernel, modules string
	init, node      string
	officers        []*gm.PrivateKey
	policy          images.Policy
}

func newE2EEnv(t *testing.T) *e2eEnv {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86; scripts/deps.sh does it)")
	}
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm is not installed (scripts/deps.sh installs it)")
	}
	kernel := os.Getenv("HALLMARK_KERNEL")
	if kernel == "" {
		k, err := builder.DefaultKernel()
		if err != nil {
			t.Skipf("no kernel to boot: %v", err)
		}
		kernel = k
	}
	kb, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	kver, err := builder.KernelVersion(kb)
	if err != nil {
		t.Fatal(err)
	}
	modules := filepath.Join("/lib/modules", kver)
	if _, err := os.Stat(filepath.Join(modules, "modules.dep")); err != nil {
		t.Skipf("kernel %s has no module tree at %s", kver, modules)
	}
	t.Logf("kernel %s (%s)", kernel, kver)
	keys := imagetest.Keys(t, 3)
	return &e2eEnv{
		kernel:   kernel,
		modules:  modules,
		init:     imagetest.BuildStatic(t, "hallmark/cmd/hallmarkd-init", ""),
		node:     imagetest.BuildStatic(t, "hallmark/firmware/boot/internal/testnode", ""),
		officers: keys,
		policy:   imagetest.Policy(2, keys...),
	}
}

// build builds and signs (2 of 3 officers) a release.
func (e *e2eEnv) build(t *testing.T, version string, securityVersion uint64, nodeArgs ...string) imagetest.Built {
	cfg, err := WriteConfig(Config{
		Node:         NodeConfig{Command: append([]string{"/bin/hallmark-node"}, nodeArgs...), StopTimeout: Duration(3 * time.Second)},
		DeviceWait:   Duration(60 * time.Second),
		CommitAfter:  Duration(3 * time.Second),
		TrialTimeout: Duration(30 * time.Second),
		BackoffMin:   Duration(time.Second),
		BackoffMax:   Duration(4 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	b := imagetest.Build(t, builder.Spec{
		Version:         version,
		SecurityVersion: securityVersion,
		Hardware:        e2eHardware,
		Kernel:          e.kernel,
		ModulesDir:      e.modules,
		Modules:         e2eModules,
		Init:            e.init,
		Files: []builder.File{
			{Path: ConfigPath, Data: cfg},
			{Path: "/bin/hallmark-node", Source: e.node, Mode: 0o755},
		},
		Cmdline:  "console=ttyS0 quiet loglevel=3 panic=-1",
		SlotSize: 32 << 20,
		DataSize: 8 << 20,
	})
	imagetest.Sign(t, b.Manifest, e.officers[:2]...)
	return b
}

// vm is one qemu run.
type vm struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	exited chan struct{}
	tpm    *swtpmtest.Emulator
}

// boot plays the bootloader on disk and boots the selection in qemu.
func boot(t *testing.T, disk, tpmDir string, port int) (*vm, loader.Selection) {
	t.Helper()
	dev, err := flash.OpenDevice(disk)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := loader.Select(dev)
	dev.Close()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(kernel, sel.Kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, sel.Initrd, 0o644); err != nil {
		t.Fatal(err)
	}
	v := &vm{exited: make(chan struct{}), tpm: swtpmtest.StartEmulator(t, tpmDir)}
	v.cmd = exec.Command("qemu-system-x86_64",
		"-machine", "q35", "-cpu", "max", "-m", "384", "-smp", "1",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", kernel, "-initrd", initrd, "-append", sel.Cmdline,
		"-drive", "file="+disk+",format=raw,if=virtio,cache=writeback",
		"-chardev", "socket,id=chrtpm,path="+v.tpm.CtrlSocket(),
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0",
		"-netdev", fmt.Sprintf("user,id=n0,net=198.18.5.0/24,host=198.18.5.2,restrict=on,hostfwd=tcp:127.0.0.1:%d-198.18.5.10:8080", port),
		"-device", "virtio-net-pci,netdev=n0",
	)
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.cmd.Stdout
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("booting slot %s (trial %v, fell back from %s): %s", sel.Boot.Slot, sel.Boot.Trial, sel.Boot.FellBack, sel.Cmdline)
	go func() {
		buf := make([]byte, 4096)
		var partial string
		for {
			n, err := out.Read(buf)
			partial += string(buf[:n])
			for {
				i := strings.IndexByte(partial, '\n')
				if i < 0 {
					break
				}
				v.mu.Lock()
				v.lines = append(v.lines, strings.TrimRight(partial[:i], "\r"))
				v.mu.Unlock()
				partial = partial[i+1:]
			}
			if err != nil {
				break
			}
		}
		_ = v.cmd.Wait()
		close(v.exited)
	}()
	t.Cleanup(func() {
		v.kill()
		t.Logf("console of the boot of slot %s:\n%s", sel.Boot.Slot, v.transcript())
	})
	return v, sel
}

func (v *vm) transcript() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.lines, "\n")
}

// waitFor returns the submatches of the first console line matching re.
func (v *vm) waitFor(t *testing.T, re string, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		v.mu.Lock()
		for _, l := range v.lines {
			if m := rx.FindStringSubmatch(l); m != nil {
				v.mu.Unlock()
				return m
			}
		}
		v.mu.Unlock()
		select {
		case <-v.exited:
			// One last look after the machine stopped.
			v.mu.Lock()
			for _, l := range v.lines {
				if m := rx.FindStringSubmatch(l); m != nil {
					v.mu.Unlock()
					return m
				}
			}
			v.mu.Unlock()
			t.Fatalf("qemu exited before the console showed %q", re)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no console line matching %q within %v", re, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill pulls the plug (the boot control state the test relies on is
// synced to disk before the init logs it).
func (v *vm) kill() {
	select {
	case <-v.exited:
	default:
		// Never signal pid <= 1: kill(2) reads those as a group or as
		// every process.
		if v.cmd.Process.Pid > 1 {
			_ = v.cmd.Process.Kill()
		}
		<-v.exited
	}
	v.tpm.Stop()
}

func (v *vm) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-v.exited:
	case <-time.After(timeout):
		t.Fatalf("qemu still running after %v", timeout)
	}
}

type health struct {
	Slot, Version string
	PID           int
	Keys          []struct{ Name, KeyID, PublicKey, Signature string }
	Failed        map[string]string
}

// getHealth asks the node for its health through the guest network, with
// a fresh challenge for its keys to sign, and checks every signature.
func getHealth(t *testing.T, port int) health {
	t.Helper()
	challenge := fmt.Sprintf("%x", time.Now().UnixNano())
	var last error
	for range 50 {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health?challenge=%s", port, challenge))
		if err == nil {
			var h health
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil {
				msg, _ := hex.DecodeString(challenge)
				for _, k := range h.Keys {
					if err := verifyHex(k.PublicKey, k.Signature, append([]byte(challengeDomain), msg...)); err != nil {
						t.Fatalf("key %s: %v", k.Name, err)
					}
				}
				return h
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("node health endpoint through the guest network: %v", last)
	return health{}
}

func verifyHex(pubHex, sigHex string, msg []byte) error {
	pb, err := hex.DecodeString(pubHex)
	if err != nil {
		return err
	}
	pub, err := gm.ParsePublicKey(pb)
	if err != nil {
		return err
	}
	sb, err := hex.DecodeString(sigHex)
	if err != nil || len(sb) != len(gm.Signature{}) {
		return fmt.Errorf("signature %q", sigHex)
	}
	if !pub.Verify(msg, gm.Signature(sb)) {
		return errors.New("signature over the challenge does not verify")
	}
	return nil
}

// keyIDs lists the keys a node opened as name=id.
func (h health) keyIDs() string {
	var out []string
	for _, k := range h.Keys {
		out = append(out, k.Name+"="+k.KeyID)
	}
	return strings.Join(out, ",")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeData puts files on the data partition of disk, as provisioning will.
func writeData(t *testing.T, disk string, files map[string][]byte) {
	t.Helper()
	dev, err := flash.OpenDevice(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	parts, err := flash.Locate(dev)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := fat32.Read(file.New(dev.File(), false), parts.Data.Size, parts.Data.Offset, images.SectorSize)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if dir := filepath.Dir(name); dir != "/" {
			if err := fs.Mkdir(dir); err != nil {
				t.Fatal(err)
			}
		}
		f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// readCounter reads the device's anti-rollback counter from its TPM while
// no virtual machine runs.
func readCounter(t *testing.T, tpmDir string) uint64 {
	t.Helper()
	sim := swtpmtest.StartWithState(t, tpmDir)
	defer sim.Stop()
	ctx := context.Background()
	c, err := tpm.Dial(ctx, tpm.Config{Addr: sim.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := tpm.ReadCounter(ctx, c, tpm.FirmwareCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func deviceState(t *testing.T, disk string) bootctl.State {
	t.Helper()
	dev, err := flash.OpenDevice(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	st, _, err := flash.DeviceState(dev)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func update(t *testing.T, disk string, b imagetest.Built, policy images.Policy, floor uint64) (flash.Report, error) {
	t.Helper()
	dev, err := flash.OpenDevice(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	payload, err := os.Open(b.Slot)
	if err != nil {
		t.Fatal(err)
	}
	defer payload.Close()
	return flash.Update(context.Background(), payload, int64(b.Manifest.Body.Firmware.SlotSize), b.Manifest, policy, dev, flash.UpdateOptions{RollbackFloor: floor}, nil)
}

// checkMeasurement checks the console's measurement line against what the
// manifest predicts: the slot digest, and the PCR value after extending
// that digest into a freshly reset PCR.
func checkMeasurement(t *testing.T, v *vm, slot bootctl.Slot, b imagetest.Built) {
	t.Helper()
	m := v.waitFor(t, `msg="measured slot" .*slot=`+slot.String()+` digest=([0-9a-f]{64}) pcr=15 sha256=([0-9a-f]{64})`, 2*time.Minute)
	want := b.Manifest.Body.Firmware.SlotDigest
	if m[1] != want.String() {
		t.Fatalf("measured digest %s, manifest predicts %s", m[1], want)
	}
	if predicted := hex.EncodeToString(images.PredictPCR(crypto.SHA256, want)); m[2] != predicted {
		t.Fatalf("PCR 15 read back as %s, manifest predicts %s", m[2], predicted)
	}
}

func TestBootE2E(t *testing.T) {
	start := time.Now()
	e := newE2EEnv(t)
	v1 := e.build(t, "1.0.0", 1)
	v2 := e.build(t, "2.0.0", 2)
	broken := e.build(t, "3.0.0-broken", 3, "--crash")
	t.Logf("built three releases in %v", time.Since(start).Round(time.Second))

	// Flash v1 onto a disk a little larger than the image.
	disk := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, int64(v1.Manifest.Body.ImageSize)+(4<<20)); err != nil {
		t.Fatal(err)
	}
	func() {
		dev, err := flash.OpenDevice(disk)
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		img, err := os.Open(v1.Image)
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		if _, err := flash.Flash(context.Background(), img, int64(v1.Manifest.Body.ImageSize), v1.Manifest, e.policy, dev, flash.Target{Hardware: e2eHardware}, nil); err != nil {
			t.Fatal(err)
		}
	}()

	// Provision the device as a factory would: its network configuration,
	// and a node key generated and sealed by the device's TPM to the
	// PCR value v1 produces once booted (hsm.GenerateSealedTo), plus a file
	// that is no key at all.
	tpmDir := t.TempDir()
	var nodeKey gm.KeyID
	func() {
		sim := swtpmtest.StartWithState(t, tpmDir)
		defer sim.Stop()
		keyDir := t.TempDir()
		info, err := hsm.GenerateSealedTo(context.Background(), "tpm-sealed:"+filepath.Join(keyDir, "v1.sealed"),
			v1.Manifest.Body.Firmware.PCRValues(), hsm.Options{TPM: tpm.Config{Addr: sim.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		nodeKey = info.KeyID
		sealed, err := os.ReadFile(filepath.Join(keyDir, "v1.sealed"))
		if err != nil {
			t.Fatal(err)
		}
		writeData(t, disk, map[string][]byte{
			"/network.json":     []byte(`{"hostname":"hm-e2e","interfaces":[{"name":"eth0","addresses":["198.18.5.10/24"],"gateway":"198.18.5.2"}]}`),
			"/keys/v1.sealed":   sealed,
			"/keys/junk.sealed": []byte("not a sealed key"),
		})
	}()
	port := freePort(t)
	t.Logf("node key %s sealed to v1's PCR %d value %x", nodeKey, images.MeasurementPCR, v1.Manifest.Body.Firmware.PCRValues()[images.MeasurementPCR])

	t.Run("v1 boots, measures, and its node opens the key sealed to v1", func(t *testing.T) {
		bootStart := time.Now()
		v, sel := boot(t, disk, tpmDir, port)
		if sel.Boot.Slot != bootctl.SlotA || sel.Boot.Trial {
			t.Fatalf("bootloader chose %+v", sel.Boot)
		}
		v.waitFor(t, `msg="hallmark init starting" .*version=1\.0\.0 .*pid=1$`, 2*time.Minute)
		checkMeasurement(t, v, bootctl.SlotA, v1)
		v.waitFor(t, `test node: key v1 opened: id `+nodeKey.String(), time.Minute)
		v.waitFor(t, `test node: key junk not opened: .*not a sealed key file`, time.Minute)
		v.waitFor(t, `msg="network interface up" .*name=eth0`, time.Minute)
		v.waitFor(t, `msg="node ready"`, time.Minute)
		c := v.waitFor(t, `msg="anti-rollback counter" .*value=(\d+)`, time.Minute)
		if n, _ := strconv.Atoi(c[1]); n != 1 {
			t.Fatalf("counter %d after committing security version 1 on a new TPM, want 1", n)
		}
		h := getHealth(t, port)
		if h.Slot != "A" || h.Version != "1.0.0" || h.keyIDs() != "v1="+nodeKey.String() {
			t.Fatalf("node reports %+v", h)
		}
		t.Logf("boot to healthy node: %v", time.Since(bootStart).Round(time.Second))

		// Before the update, the running node reseals its key to the PCR
		// value v2 will produce (hsm.ResealTo), keeping v1's copy for a
		// fallback.
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/reseal?key=v1&to=v2&pcr=%x", port,
			v2.Manifest.Body.Firmware.PCRValues()[images.MeasurementPCR]), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var info hsm.KeyInfo
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || info.KeyID != nodeKey {
			t.Fatalf("reseal for v2: %s, %+v, %v", resp.Status, info, err)
		}
		v.waitFor(t, `test node: key v1 resealed to v2: id `+nodeKey.String(), time.Minute)
		v.kill()
	})

	t.Run("update to v2 in slot B commits and advances the counter; v1's key stays sealed", func(t *testing.T) {
		floor := readCounter(t, tpmDir)
		if floor != 1 {
			t.Fatalf("counter %d before the update, want 1", floor)
		}
		rep, err := update(t, disk, v2, e.policy, floor)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Slot != bootctl.SlotB {
			t.Fatalf("update went to %s", rep.Slot)
		}
		v, sel := boot(t, disk, tpmDir, port)
		if sel.Boot.Slot != bootctl.SlotB || !sel.Boot.Trial {
			t.Fatalf("bootloader chose %+v", sel.Boot)
		}
		v.waitFor(t, `msg="booted slot" .*slot=B trial=true`, 2*time.Minute)
		checkMeasurement(t, v, bootctl.SlotB, v2)
		v.waitFor(t, `test node: key v1 not opened: .*wrong PCR state`, time.Minute)
		v.waitFor(t, `test node: key v2 opened: id `+nodeKey.String(), time.Minute)
		v.waitFor(t, `msg="slot committed" .*slot=B version=2\.0\.0`, time.Minute)
		c := v.waitFor(t, `msg="anti-rollback counter" .*value=(\d+)`, time.Minute)
		if n, _ := strconv.Atoi(c[1]); n != 2 {
			t.Fatalf("counter %d after committing security version 2, want 2", n)
		}
		h := getHealth(t, port)
		if h.Slot != "B" || h.Version != "2.0.0" || h.keyIDs() != "v2="+nodeKey.String() || !strings.Contains(h.Failed["v1"], "wrong PCR state") {
			t.Fatalf("node reports %+v", h)
		}
		v.kill()
		st := deviceState(t, disk)
		if st.Active != bootctl.SlotB || st.B.State != bootctl.Good || st.Trial != bootctl.SlotNone {
			t.Fatalf("boot control after commit: %+v", st)
		}
	})

	t.Run("v1 is now refused as a rollback", func(t *testing.T) {
		floor := readCounter(t, tpmDir)
		if floor != 2 {
			t.Fatalf("TPM counter %d, want 2", floor)
		}
		before := deviceState(t, disk)
		if _, err := update(t, disk, v1, e.policy, floor); !errors.Is(err, flash.ErrRollback) {
			t.Fatalf("update back to v1 = %v, want ErrRollback", err)
		}
		if after := deviceState(t, disk); after != before {
			t.Fatal("a refused update changed boot control")
		}
	})

	t.Run("a broken update falls back to v2", func(t *testing.T) {
		rep, err := update(t, disk, broken, e.policy, readCounter(t, tpmDir))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Slot != bootctl.SlotA {
			t.Fatalf("update went to %s", rep.Slot)
		}
		v, sel := boot(t, disk, tpmDir, port)
		if sel.Boot.Slot != bootctl.SlotA || !sel.Boot.Trial {
			t.Fatalf("bootloader chose %+v", sel.Boot)
		}
		checkMeasurement(t, v, bootctl.SlotA, broken)
		v.waitFor(t, `msg="node exited; restarting"`, 2*time.Minute)
		v.waitFor(t, `msg="trial boot failed; rebooting`, 2*time.Minute)
		v.waitExit(t, time.Minute) // -no-reboot: the guest's reboot ends qemu
		v.kill()

		v, sel = boot(t, disk, tpmDir, port)
		if sel.Boot.Slot != bootctl.SlotB || sel.Boot.Trial || sel.Boot.FellBack != bootctl.SlotA {
			t.Fatalf("bootloader after the failed trial chose %+v", sel.Boot)
		}
		v.waitFor(t, `msg="booted slot" .*slot=B trial=false`, 2*time.Minute)
		checkMeasurement(t, v, bootctl.SlotB, v2)
		v.waitFor(t, `msg="node ready"`, time.Minute)
		if h := getHealth(t, port); h.Version != "2.0.0" || h.keyIDs() != "v2="+nodeKey.String() {
			t.Fatalf("node after fallback reports %+v", h)
		}
		v.kill()
		st := deviceState(t, disk)
		if st.Active != bootctl.SlotB || st.A.State != bootctl.Bad || st.A.Firmware.Version != "3.0.0-broken" {
			t.Fatalf("boot control after fallback: %+v", st)
		}
		if n := readCounter(t, tpmDir); n != 2 {
			t.Fatalf("counter %d after the failed update, want 2", n)
		}
	})
	t.Logf("whole test: %v", time.Since(start).Round(time.Second))
}
