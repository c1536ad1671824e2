//go:build boote2e

// The end-to-end boot test: it builds real images (Debian's kernel, the
// static hallmarkd-init as PID 1, a stand-in node), flashes one onto a disk
// file, and boots it in qemu (TCG) with swtpm as the TPM, playing the
// bootloader with package loader. It runs with `make test-boot`.
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
	"github.com/google/go-tpm/tpm2"

	"hallmark/firmware/boot/internal/swtpm"
	"hallmark/gm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/builder"
	"hallmark/images/flash"
	"hallmark/images/imagetest"
	"hallmark/images/loader"
)

// testNodeSource is the stand-in node until the node runtime exists: it
// serves its view of the boot on :8080 and reports ready on the pipe the
// init gave it; with --crash it fails at once, like a broken release.
const testNodeSource = `package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--crash" {
		fmt.Println("test node: this release is broken on purpose; exiting")
		os.Exit(1)
	}
	var keys []string
	entries, _ := os.ReadDir(os.Getenv("HALLMARK_KEYS"))
	for _, e := range entries {
		keys = append(keys, e.Name())
	}
	sort.Strings(keys)
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Println("test node:", err)
		os.Exit(1)
	}
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"slot": os.Getenv("HALLMARK_SLOT"), "version": os.Getenv("HALLMARK_VERSION"),
			"keys": keys, "pid": os.Getpid(), "ppid": os.Getppid(),
		})
	})
	go http.Serve(ln, nil)
	fd, _ := strconv.Atoi(os.Getenv("HALLMARK_READY_FD"))
	ready := os.NewFile(uintptr(fd), "ready")
	ready.Write([]byte("READY\n"))
	ready.Close()
	fmt.Println("test node: serving on :8080")
	select {}
}
`

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
	if err := swtpm.Available(); err != nil {
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
		node:     imagetest.BuildStatic(t, "", testNodeSource),
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
	tpm    *swtpm.Instance
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
	v := &vm{exited: make(chan struct{}), tpm: swtpm.StartForQEMU(t, tpmDir)}
	v.cmd = exec.Command("qemu-system-x86_64",
		"-machine", "q35", "-cpu", "max", "-m", "384", "-smp", "1",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", kernel, "-initrd", initrd, "-append", sel.Cmdline,
		"-drive", "file="+disk+",format=raw,if=virtio,cache=writeback",
		"-chardev", "socket,id=chrtpm,path="+v.tpm.CtrlSocket,
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
		_ = v.cmd.Process.Kill()
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
	Keys          []string
	PID           int
}

func getHealth(t *testing.T, port int) health {
	t.Helper()
	var last error
	for range 50 {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
		if err == nil {
			var h health
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil {
				return h
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("node health endpoint through the guest network: %v", last)
	return health{}
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

func readCounter(t *testing.T, tpmDir string) uint64 {
	t.Helper()
	inst := swtpm.Start(t, tpmDir)
	defer inst.Stop()
	v, err := TPMCounter{TPM: inst.Open(t), Index: tpm2.TPMHandle(DefaultCounterIndex)}.Read(context.Background())
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

	// Provision the device: network configuration, and two keys sealed
	// with the device's TPM, one to v1's measurement and one to v2's.
	tpmDir := swtpm.StateDir(t)
	func() {
		inst := swtpm.Start(t, tpmDir)
		defer inst.Stop()
		tpm := inst.Open(t)
		seal := func(b imagetest.Built, secret string) []byte {
			blob, err := Seal(tpm, images.MeasurementPCR, images.PredictPCR(crypto.SHA256, b.Manifest.Body.Firmware.Measurement()), []byte(secret))
			if err != nil {
				t.Fatal(err)
			}
			return blob
		}
		writeData(t, disk, map[string][]byte{
			"/network.json":     []byte(`{"hostname":"hm-e2e","interfaces":[{"name":"eth0","addresses":["198.18.5.10/24"],"gateway":"198.18.5.2"}]}`),
			"/keys/v1.sealed":   seal(v1, "key sealed to release 1"),
			"/keys/v2.sealed":   seal(v2, "key sealed to release 2"),
			"/keys/junk.sealed": []byte("not a sealed key"),
		})
	}()
	port := freePort(t)

	t.Run("v1 boots, measures and unseals only its own key", func(t *testing.T) {
		bootStart := time.Now()
		v, sel := boot(t, disk, tpmDir, port)
		if sel.Boot.Slot != bootctl.SlotA || sel.Boot.Trial {
			t.Fatalf("bootloader chose %+v", sel.Boot)
		}
		v.waitFor(t, `msg="hallmark init starting" .*version=1\.0\.0 .*pid=1$`, 2*time.Minute)
		checkMeasurement(t, v, bootctl.SlotA, v1)
		v.waitFor(t, `msg="key unsealed" .*key=v1 `, time.Minute)
		v.waitFor(t, `msg="key not unsealed" .*key=v2 .*sealed to another firmware measurement`, time.Minute)
		v.waitFor(t, `msg="key not unsealed" .*key=junk `, time.Minute)
		v.waitFor(t, `msg="network interface up" .*name=eth0`, time.Minute)
		v.waitFor(t, `msg="node ready"`, time.Minute)
		c := v.waitFor(t, `msg="anti-rollback counter" .*value=(\d+)`, time.Minute)
		if n, _ := strconv.Atoi(c[1]); n < 1 {
			t.Fatalf("counter %d after running security version 1", n)
		}
		h := getHealth(t, port)
		if h.Slot != "A" || h.Version != "1.0.0" || strings.Join(h.Keys, ",") != "v1" {
			t.Fatalf("node reports %+v", h)
		}
		t.Logf("boot to healthy node: %v", time.Since(bootStart).Round(time.Second))
		v.kill()
	})

	t.Run("update to v2 in slot B commits and advances the counter", func(t *testing.T) {
		floor := readCounter(t, tpmDir)
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
		v.waitFor(t, `msg="key unsealed" .*key=v2 `, time.Minute)
		v.waitFor(t, `msg="key not unsealed" .*key=v1 .*sealed to another firmware measurement`, time.Minute)
		v.waitFor(t, `msg="slot committed" .*slot=B version=2\.0\.0`, time.Minute)
		c := v.waitFor(t, `msg="anti-rollback counter" .*value=(\d+)`, time.Minute)
		if n, _ := strconv.Atoi(c[1]); n < 2 {
			t.Fatalf("counter %d after committing security version 2", n)
		}
		h := getHealth(t, port)
		if h.Slot != "B" || h.Version != "2.0.0" || strings.Join(h.Keys, ",") != "v2" {
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
		if floor < 2 {
			t.Fatalf("TPM counter %d", floor)
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
		if h := getHealth(t, port); h.Version != "2.0.0" {
			t.Fatalf("node after fallback reports %+v", h)
		}
		v.kill()
		st := deviceState(t, disk)
		if st.Active != bootctl.SlotB || st.A.State != bootctl.Bad || st.A.Firmware.Version != "3.0.0-broken" {
			t.Fatalf("boot control after fallback: %+v", st)
		}
	})
	t.Logf("whole test: %v", time.Since(start).Round(time.Second))
}
