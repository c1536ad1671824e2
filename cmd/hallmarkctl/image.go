package main

import (
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/spf13/cobra"

	"hallmark/firmware/boot"
	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
	"hallmark/images"
	"hallmark/images/bootctl"
	"hallmark/images/builder"
	"hallmark/images/flash"
	"hallmark/images/loader"
)

// defaultModules are loaded by the init: virtio disk and network for
// qemu and most hypervisors, and the data partition's filesystem.
var defaultModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "vfat", "nls_cp437", "nls_ascii", "nls_utf8"}

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build, sign, inspect and verify firmware images",
	}
	cmd.AddCommand(newImageBuildCmd(), newImageSignCmd(), newImageVerifyCmd(), newImageShowCmd(),
		newImageStatusCmd(), newImageBootFilesCmd())
	return cmd
}

// manifestPath returns the manifest that goes with an image or slot file:
// the same name with the extension replaced by ".manifest".
func manifestPath(artifact string) string {
	return strings.TrimSuffix(artifact, filepath.Ext(artifact)) + ".manifest"
}

func readManifest(path string) (*images.Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	m, err := images.DecodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a crash leaves either the old or the new file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func writeManifest(path string, m *images.Manifest) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

// readTrust reads a PEM file of SM2 public keys (PKIX) as a policy with
// the given threshold.
func readTrust(path string, threshold int) (images.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return images.Policy{}, fmt.Errorf("trusted keys: %w", err)
	}
	p := images.Policy{Threshold: threshold}
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := gm.ParsePKIX(block.Bytes)
		if err != nil {
			return p, fmt.Errorf("trusted keys %s: %w", path, err)
		}
		p.Keys = append(p.Keys, k)
	}
	if len(p.Keys) == 0 {
		return p, fmt.Errorf("trusted keys %s: no PEM \"PUBLIC KEY\" blocks", path)
	}
	return p, p.Validate()
}

type trustFlags struct {
	file      string
	threshold int
}

func (t *trustFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.file, "trust", "", "PEM file of the trusted release keys (SM2 PKIX public keys)")
	cmd.Flags().IntVar(&t.threshold, "threshold", 0, "how many distinct trusted keys must have signed (M of N)")
	_ = cmd.MarkFlagRequired("trust")
	_ = cmd.MarkFlagRequired("threshold")
}

func (t *trustFlags) policy() (images.Policy, error) { return readTrust(t.file, t.threshold) }

func newImageBuildCmd() *cobra.Command {
	var (
		spec                     builder.Spec
		out, name, node, initBin string
		nodeArgs, files          []string
		slotMiB, dataMiB         int64
		commitAfter, trialLimit  time.Duration
		nodeKey, updateListen    string
		trust                    trustFlags
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build a reproducible disk image, its slot payload and its (unsigned) manifest",
		Long: `Build writes NAME.img (the GPT disk image to flash), NAME.slot (the root
slot alone, the payload of "hallmarkctl update") and NAME.manifest (the
release manifest; officers then sign it with "hallmarkctl image sign").
The same inputs always give the same bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			w := cmd.OutOrStdout()
			if spec.Kernel == "" {
				k, err := builder.DefaultKernel()
				if err != nil {
					return err
				}
				spec.Kernel = k
			}
			kb, err := os.ReadFile(spec.Kernel)
			if err != nil {
				return fmt.Errorf("kernel: %w", err)
			}
			kver, err := builder.KernelVersion(kb)
			if err != nil {
				return err
			}
			if spec.ModulesDir == "" && len(spec.Modules) > 0 {
				spec.ModulesDir = filepath.Join("/lib/modules", kver)
			}
			fmt.Fprintf(w, "kernel %s (%s)\n", spec.Kernel, kver)

			if initBin == "" {
				dir, err := os.MkdirTemp("", "hallmark-init-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				initBin = filepath.Join(dir, "hallmarkd-init")
				fmt.Fprintln(w, "building hallmarkd-init from source (CGO_ENABLED=0)")
				if err := goBuildStatic(ctx, "hallmark/cmd/hallmarkd-init", initBin); err != nil {
					return fmt.Errorf("%w (or pass --init with a static binary)", err)
				}
			}
			spec.Init = initBin
			if node == "" {
				return errors.New("--node is required: the static binary the init starts and supervises")
			}
			command := []string{"/bin/hallmarkd"}
			if nodeKey != "" {
				// Each release opens the copy of the node key sealed to it.
				keyPath, err := boot.SealedKeyPath(boot.KeyDir, nodeKey, spec.Version)
				if err != nil {
					return fmt.Errorf("--node-key: %w", err)
				}
				command = append(command, "-node-key", "tpm-sealed:"+keyPath)
			}
			initCfg := boot.Config{
				Node:         boot.NodeConfig{Command: append(command, nodeArgs...)},
				CommitAfter:  boot.Duration(commitAfter),
				TrialTimeout: boot.Duration(trialLimit),
			}
			if updateListen != "" {
				if trust.file == "" || trust.threshold == 0 {
					return errors.New("--update-listen needs --trust and --threshold: the release keys the update service accepts")
				}
				policy, err := readTrust(trust.file, trust.threshold)
				if err != nil {
					return err
				}
				initCfg.Updates = boot.UpdatesConfig{Listen: updateListen, Threshold: policy.Threshold}
				for _, k := range policy.Keys {
					b := k.Bytes()
					initCfg.Updates.ReleaseKeys = append(initCfg.Updates.ReleaseKeys, hex.EncodeToString(b[:]))
				}
			}
			cfg, err := boot.WriteConfig(initCfg)
			if err != nil {
				return err
			}
			spec.Files = append(spec.Files,
				builder.File{Path: boot.ConfigPath, Data: cfg},
				builder.File{Path: "/bin/hallmarkd", Source: node, Mode: 0o755})
			for _, f := range files {
				src, dst, ok := strings.Cut(f, "=")
				if !ok || !strings.HasPrefix(dst, "/") {
					return fmt.Errorf("--file %q: want SOURCE=/ABSOLUTE/PATH", f)
				}
				spec.Files = append(spec.Files, builder.File{Path: dst, Source: src})
			}
			spec.SlotSize, spec.DataSize = slotMiB<<20, dataMiB<<20
			if spec.Epoch == 0 {
				if env := os.Getenv("SOURCE_DATE_EPOCH"); env != "" {
					if spec.Epoch, err = strconv.ParseInt(env, 10, 64); err != nil {
						return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
					}
				}
			}
			if name == "" {
				name = fmt.Sprintf("hallmark-%s-%s", spec.Version, spec.Hardware)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			base := filepath.Join(out, name)
			p := newProgress(cmd.ErrOrStderr())
			m, err := builder.Build(ctx, spec, builder.Output{Image: base + ".img", Slot: base + ".slot"},
				func(done, total int64) { p.update("hash", done, total) })
			p.finish()
			if err != nil {
				return err
			}
			if err := writeManifest(base+".manifest", m); err != nil {
				return err
			}
			id, _ := m.Body.ID()
			fw := m.Body.Firmware
			fmt.Fprintf(w, "built %s.img (%d MiB), %s.slot and %s.manifest\n", base, m.Body.ImageSize>>20, base, base)
			fmt.Fprintf(w, "  release    %s, security version %d, hardware %s\n", fw.Version, fw.SecurityVersion, fw.Hardware)
			fmt.Fprintf(w, "  manifest   %s (unsigned: sign it with \"hallmarkctl image sign\")\n", id)
			fmt.Fprintf(w, "  slot       %s\n", fw.SlotDigest)
			fmt.Fprintf(w, "  PCR %d     sha256 %x after a measured boot\n", images.MeasurementPCR, images.PredictPCR(crypto.SHA256, fw.Measurement()))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Version, "version", "", "release version, e.g. 1.4.0")
	f.Uint64Var(&spec.SecurityVersion, "security-version", 0, "anti-rollback security version (raise it when the old release must no longer install)")
	f.StringVar(&spec.Hardware, "hardware", "", "target hardware id")
	f.StringVar(&spec.Kernel, "kernel", "", "x86 kernel (bzImage); default the newest /boot/vmlinuz-*")
	f.StringVar(&spec.ModulesDir, "modules-dir", "", "kernel module tree; default /lib/modules/<kernel version>")
	f.StringSliceVar(&spec.Modules, "modules", defaultModules, "kernel modules the init loads (dependencies are added)")
	f.StringVar(&initBin, "init", "", "static init binary; default: build cmd/hallmarkd-init from this source tree")
	f.StringVar(&node, "node", "", "static node binary, installed as /bin/hallmarkd")
	f.StringSliceVar(&nodeArgs, "node-arg", nil, "argument for the node command (repeatable)")
	f.StringVar(&nodeKey, "node-key", "node", "name of the node key: the release runs hallmarkd -node-key tpm-sealed:/data/keys/NAME@VERSION.sealed (\"\" passes none)")
	f.StringVar(&updateListen, "update-listen", "", "address of the update service that carries sealed keys to a signed next release, e.g. :7409 (needs --trust and --threshold)")
	f.StringVar(&trust.file, "trust", "", "PEM file of the release keys the update service trusts")
	f.IntVar(&trust.threshold, "threshold", 0, "how many of those keys must have signed a release")
	f.StringArrayVar(&files, "file", nil, "extra initramfs file as SOURCE=/PATH (repeatable)")
	f.StringVar(&spec.Cmdline, "cmdline", "console=ttyS0 quiet loglevel=3 panic=-1", "kernel command line (the bootloader adds hallmark.slot=)")
	f.Int64Var(&slotMiB, "slot-size", 48, "size of each root slot in MiB")
	f.Int64Var(&dataMiB, "data-size", 64, "size of the data partition in MiB")
	f.Int64Var(&spec.Epoch, "epoch", 0, "timestamp for every file in the image, seconds since 1970; default $SOURCE_DATE_EPOCH or 2024-01-01")
	f.DurationVar(&commitAfter, "commit-after", 10*time.Second, "how long the node must stay ready before an updated slot commits")
	f.DurationVar(&trialLimit, "trial-timeout", 3*time.Minute, "how long an updated slot may take to commit before the device falls back")
	f.StringVar(&out, "out", ".", "output directory")
	f.StringVar(&name, "name", "", "output file name without extension; default hallmark-VERSION-HARDWARE")
	for _, req := range []string{"version", "hardware"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

// goBuildStatic builds a main package of this module as a static,
// reproducible binary.
func goBuildStatic(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", pkg, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// releaseSigner opens a key that signs releases: a key in custody named by
// an hsm reference, or, for development, a PKCS#8 PEM file.
type releaseSigner struct {
	tpmAddr        string
	tpmTimeout     time.Duration
	passphraseFile string
}

func (f *releaseSigner) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.tpmAddr, "tpm", envOr(envTPM, tpm.DefaultDevice), "TPM holding tpm and tpm-sealed keys: device path or host:port (swtpm) [$"+envTPM+"]")
	cmd.Flags().DurationVar(&f.tpmTimeout, "tpm-timeout", 5*time.Second, "how long to keep trying to reach the TPM")
	cmd.Flags().StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the passphrase of dev keys (else $"+envPassphrase+")")
}

// isKeyRef reports whether spec is an hsm key reference rather than a
// file name.
func isKeyRef(spec string) bool {
	kind, _, ok := strings.Cut(spec, ":")
	return ok && slices.Contains(hsm.Kinds(), hsm.Kind(kind))
}

// open returns the signer spec names and a function that releases it.
func (f *releaseSigner) open(ctx context.Context, spec string) (gm.Signer, func(), error) {
	if !isKeyRef(spec) {
		b, err := os.ReadFile(spec)
		if err != nil {
			return nil, nil, fmt.Errorf("key: %w (a key is an hsm reference such as pkcs11:... or tpm:handle=0x81000010, or a PKCS#8 PEM file)", err)
		}
		k, err := gm.ParsePKCS8PEM(b)
		if err != nil {
			return nil, nil, fmt.Errorf("key %s: %w", spec, err)
		}
		return k, k.Wipe, nil
	}
	opts := hsm.Options{TPM: tpm.Config{Addr: f.tpmAddr, RetryFor: f.tpmTimeout}}
	if strings.HasPrefix(spec, string(hsm.KindDev)+":") {
		kf := keyFlags{passphraseFile: f.passphraseFile}
		var err error
		if opts.Passphrase, err = kf.passphrase(); err != nil {
			return nil, nil, err
		}
	}
	s, err := hsm.Open(ctx, spec, opts)
	if err != nil {
		return nil, nil, explain(err, &keyFlags{tpmAddr: f.tpmAddr})
	}
	return s, func() { s.Close() }, nil
}

func newImageSignCmd() *cobra.Command {
	var (
		keys   []string
		signer releaseSigner
	)
	cmd := &cobra.Command{
		Use:   "sign MANIFEST",
		Short: "Add release signatures to a manifest (one officer key each)",
		Long: `Sign adds the signature of each named key to the manifest, in place.
A key is a key reference in custody, as "hallmarkctl key" takes them
(pkcs11:..., tpm:handle=..., tpm:blob=..., tpm-sealed:..., dev:...), or,
for development, a PKCS#8 PEM SM2 private key file. Officers sign one after
another; the order does not matter and signing twice with one key replaces
its signature.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := readManifest(args[0])
			if err != nil {
				return err
			}
			if len(keys) == 0 {
				return errors.New("--key is required")
			}
			for _, spec := range keys {
				s, release, err := signer.open(cmd.Context(), spec)
				if err != nil {
					return err
				}
				err = m.Sign(cmd.Context(), s)
				id := s.PublicKey().ID()
				release()
				if err != nil {
					return fmt.Errorf("signing with %s: %w", spec, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "signed with key %x (%s)\n", id.Short(), spec)
			}
			if err := writeManifest(args[0], m); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s now carries %d signatures\n", args[0], len(m.Signatures))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keys, "key", nil, "release key: an hsm key reference, or a PKCS#8 PEM file for development (repeatable)")
	signer.add(cmd)
	return cmd
}

func newImageVerifyCmd() *cobra.Command {
	var (
		trust             trustFlags
		imagePath, slotTo string
	)
	cmd := &cobra.Command{
		Use:   "verify MANIFEST",
		Short: "Check a manifest's signatures and, optionally, an image or slot payload against it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := readManifest(args[0])
			if err != nil {
				return err
			}
			policy, err := trust.policy()
			if err != nil {
				return err
			}
			v, err := m.Verify(policy)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "manifest %s: %d of %d required trusted signatures (%d untrusted ignored)\n", v.ID, len(v.Trusted), policy.Threshold, v.Untrusted)
			p := newProgress(cmd.ErrOrStderr())
			check := func(path string, verify func(f *os.File, size int64) error) error {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				fi, err := f.Stat()
				if err != nil {
					return err
				}
				err = verify(f, fi.Size())
				p.finish()
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s matches the manifest\n", path)
				return nil
			}
			if imagePath != "" {
				if err := check(imagePath, func(f *os.File, size int64) error {
					return images.VerifyImage(cmd.Context(), f, size, &m.Body, func(d, t int64) { p.update("verify", d, t) })
				}); err != nil {
					return err
				}
			}
			if slotTo != "" {
				if err := check(slotTo, func(f *os.File, size int64) error {
					return images.VerifySlot(cmd.Context(), f, size, m.Body.Firmware, func(d, t int64) { p.update("verify", d, t) })
				}); err != nil {
					return err
				}
			}
			return nil
		},
	}
	trust.add(cmd)
	cmd.Flags().StringVar(&imagePath, "image", "", "disk image to check")
	cmd.Flags().StringVar(&slotTo, "slot", "", "slot payload to check")
	return cmd
}

func newImageShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show MANIFEST",
		Short: "Print a manifest as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := readManifest(args[0])
			if err != nil {
				return err
			}
			id, err := m.Body.ID()
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(struct {
				ID gm.Digest `json:"id"`
				*images.Manifest
			}{id, m})
		},
	}
}

func newImageStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status DEVICE",
		Short: "Show a device's A/B boot control state and installed releases",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := flash.OpenDevice(args[0])
			if err != nil {
				return err
			}
			defer dev.Close()
			st, parts, err := flash.DeviceState(dev)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "device %s: hardware %s, boot control seq %d\n", args[0], st.Hardware, st.Seq)
			fmt.Fprintf(w, "  active slot %s", st.Active)
			if st.Trial != bootctl.SlotNone {
				fmt.Fprintf(w, ", slot %s on trial (%d tries left)", st.Trial, st.TriesLeft)
			}
			fmt.Fprintln(w)
			store := bootctl.NewStore(dev, parts.Bootctl.Offset)
			for _, s := range []bootctl.Slot{bootctl.SlotA, bootctl.SlotB} {
				r := st.Record(s)
				fmt.Fprintf(w, "  slot %s: %-5s", s, r.State)
				if r.State != bootctl.Empty {
					fmt.Fprintf(w, " %s (security version %d) digest %s", r.Firmware.Version, r.Firmware.SecurityVersion, r.Firmware.SlotDigest.String()[:16])
				}
				if raw, err := store.ReadManifest(s); err == nil && raw != nil {
					if m, err := images.DecodeManifest(raw); err == nil {
						id, _ := m.Body.ID()
						fmt.Fprintf(w, ", manifest %s with %d signatures", id.String()[:16], len(m.Signatures))
					}
				}
				fmt.Fprintln(w)
			}
			return nil
		},
	}
}

func newImageBootFilesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "boot-files DEVICE DIR",
		Short: "Play the bootloader: choose the slot to boot and extract its kernel, initramfs and command line",
		Long: `boot-files makes the bootloader's A/B decision for DEVICE (a disk image
file or block device), records it as a bootloader would (a trial boot
spends its try), and writes vmlinuz, initrd.img and cmdline to DIR, ready
for qemu -kernel/-initrd/-append.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := flash.OpenDevice(args[0])
			if err != nil {
				return err
			}
			defer dev.Close()
			sel, err := loader.Select(dev)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(args[1], 0o755); err != nil {
				return err
			}
			for name, data := range map[string][]byte{"vmlinuz": sel.Kernel, "initrd.img": sel.Initrd, "cmdline": []byte(sel.Cmdline + "\n")} {
				if err := os.WriteFile(filepath.Join(args[1], name), data, 0o644); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "boot slot %s (%s)", sel.Boot.Slot, sel.Firmware.Version)
			if sel.Boot.Trial {
				fmt.Fprint(w, ", trial boot")
			}
			if sel.Boot.FellBack != bootctl.SlotNone {
				fmt.Fprintf(w, ", fell back from slot %s", sel.Boot.FellBack)
			}
			fmt.Fprintf(w, "\nqemu-system-x86_64 -machine q35 -m 384 -nographic -no-reboot -kernel %[1]s/vmlinuz -initrd %[1]s/initrd.img -append %[2]q -drive file=%[3]s,format=raw,if=virtio ...\n",
				args[1], sel.Cmdline, args[0])
			return nil
		},
	}
}

// floorFlags name where the device's anti-rollback floor comes from.
type floorFlags struct {
	tpm   string
	floor uint64
	index uint32
}

func (f *floorFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.tpm, "tpm", "", "the device's TPM, holding its anti-rollback counter (on the appliance: /dev/tpmrm0; host:port for swtpm)")
	cmd.Flags().Uint64Var(&f.floor, "rollback-floor", 0, "the device's anti-rollback floor, when its TPM is not reachable from here")
	cmd.Flags().Uint32Var(&f.index, "counter-index", uint32(tpm.FirmwareCounterIndex), "NV index of the anti-rollback counter")
}

// read returns the device's anti-rollback floor. With provision set (a
// flash of a release with a security version), a counter that was never
// incremented is initialised first, and its first value is the floor:
// that value is one above the highest counter this TPM ever held, and a
// release below it could never boot here, so it must be refused now,
// before it is written, not at its first boot. The manifest's signatures
// are checked before the TPM is touched.
func (f *floorFlags) read(cmd *cobra.Command, m *images.Manifest, policy images.Policy, provision bool) (uint64, error) {
	set := cmd.Flags().Changed("rollback-floor")
	switch {
	case f.tpm != "" && set:
		return 0, errors.New("give either --tpm or --rollback-floor, not both")
	case set:
		return f.floor, nil
	case f.tpm == "":
		return 0, errors.New("the device's anti-rollback floor is needed: --tpm /dev/tpmrm0 on the appliance, or --rollback-floor N (0 for a factory-new device)")
	}
	if _, err := m.Verify(policy); err != nil {
		return 0, err
	}
	ctx := cmd.Context()
	conn, err := tpm.Dial(ctx, tpm.Config{Addr: f.tpm})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	index := tpm2.TPMHandle(f.index)
	sv := m.Body.Firmware.SecurityVersion
	if !provision || sv == 0 {
		return tpm.ReadCounter(ctx, conn, index)
	}
	k, err := tpm.DefineCounter(ctx, conn, index)
	if err != nil {
		return 0, err
	}
	before, err := k.Read(ctx)
	if err != nil {
		return 0, err
	}
	v, err := k.Initialize(ctx)
	if err != nil {
		return 0, err
	}
	if before == 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "initialised the anti-rollback counter (NV index 0x%08x on %s): it starts at %d\n", f.index, f.tpm, v)
		if v > sv {
			fmt.Fprintf(cmd.OutOrStdout(), "  this TPM once held a counter at %d: only releases with security version %d or more can run on it\n", v-1, v)
		}
	}
	return v, nil
}

func printReport(w io.Writer, verb, device string, rep flash.Report) {
	fw := rep.Firmware
	fmt.Fprintf(w, "%s %s (security version %d, hardware %s) to %s, slot %s\n", verb, fw.Version, fw.SecurityVersion, fw.Hardware, device, rep.Slot)
	ids := make([]string, len(rep.Signers))
	for i, id := range rep.Signers {
		ids[i] = fmt.Sprintf("%x", id.Short())
	}
	fmt.Fprintf(w, "  manifest %s, signed by %d trusted keys (%s)\n", rep.ManifestID, len(rep.Signers), strings.Join(ids, ", "))
	fmt.Fprintf(w, "  wrote %d MiB in %v, read back and verified\n", rep.Written>>20, rep.Elapsed.Round(time.Millisecond))
}

func newFlashCmd() *cobra.Command {
	var (
		trust          trustFlags
		floor          floorFlags
		manifest, hwid string
	)
	cmd := &cobra.Command{
		Use:   "flash IMAGE DEVICE",
		Short: "Verify a signed image and write it to a device, reading it back",
		Long: `flash checks the release signatures against the trusted keys and
threshold, the target hardware, the device's anti-rollback floor, the
device size and every byte of the image, and only then writes it, with
progress, reads the device back and compares. DEVICE is a block device
(opened exclusively: a mounted device is refused) or a file standing in
for one.

The floor is the device's anti-rollback counter, read from its TPM with
--tpm (the installer runs on the appliance), or given with
--rollback-floor. With --tpm, a counter that was never incremented is
initialised first: its first value is one above the highest counter the
TPM ever held (1 on a new TPM), and a release below it is refused before
anything is written. Later the booted release raises the counter to its
security version once it runs healthy.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			image, device := args[0], args[1]
			if manifest == "" {
				manifest = manifestPath(image)
			}
			m, err := readManifest(manifest)
			if err != nil {
				return err
			}
			policy, err := trust.policy()
			if err != nil {
				return err
			}
			fl, err := floor.read(cmd, m, policy, true)
			if err != nil {
				return err
			}
			dev, err := flash.OpenDevice(device)
			if err != nil {
				return err
			}
			defer dev.Close()
			if hwid == "" {
				st, _, err := flash.DeviceState(dev)
				if err != nil {
					return fmt.Errorf("--hardware is needed: %s holds no Hallmark boot control to read it from (%v)", device, err)
				}
				hwid = st.Hardware
			}
			img, err := os.Open(image)
			if err != nil {
				return err
			}
			defer img.Close()
			fi, err := img.Stat()
			if err != nil {
				return err
			}
			p := newProgress(cmd.ErrOrStderr())
			rep, err := flash.Flash(cmd.Context(), img, fi.Size(), m, policy, dev, flash.Target{Hardware: hwid, RollbackFloor: fl},
				func(ph flash.Phase, done, total int64) { p.update(string(ph), done, total) })
			p.finish()
			if err != nil {
				return err
			}
			printReport(cmd.OutOrStdout(), "flashed", device, rep)
			return nil
		},
	}
	trust.add(cmd)
	floor.add(cmd)
	cmd.Flags().StringVar(&manifest, "manifest", "", "signed manifest; default IMAGE with the extension replaced by .manifest")
	cmd.Flags().StringVar(&hwid, "hardware", "", "the device's hardware id; default the one recorded on the device")
	return cmd
}

func newUpdateCmd() *cobra.Command {
	var (
		trust          trustFlags
		floor          floorFlags
		manifest, slot string
	)
	cmd := &cobra.Command{
		Use:   "update SLOTFILE DEVICE",
		Short: "Write a signed release into the inactive slot and mark it to be tried once",
		Long: `update verifies a release's slot payload (NAME.slot from "image build")
like flash does, writes it into the slot the device is not running from,
reads it back, and marks it to be tried on the next boot. The new slot
commits itself once the node has come up healthy on it, and only then
raises the anti-rollback counter; otherwise the next boot falls back to
the current slot. update only reads the counter (--tpm).

DEVICE may also be the URL of a running appliance's update service
(http://HOST:7409, the image's --update-listen): the manifest is checked
here, then sent with the slot payload, and the appliance checks and
installs it into its inactive slot the same way, reading its own counter.

A node whose key is sealed to the running release (tpm-sealed) must have
it resealed for the new release first, or the new release cannot open it:
hallmarkctl carry-keys NAME.manifest --device URL on a running appliance,
or hallmarkctl key reseal REF NEW-REF --for-manifest NAME.manifest.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, device := args[0], args[1]
			if manifest == "" {
				manifest = manifestPath(payload)
			}
			m, err := readManifest(manifest)
			if err != nil {
				return err
			}
			policy, err := trust.policy()
			if err != nil {
				return err
			}
			if isURL(device) {
				if _, err := m.Verify(policy); err != nil {
					return err
				}
				return installRemote(cmd, device, payload, m)
			}
			fl, err := floor.read(cmd, m, policy, false)
			if err != nil {
				return err
			}
			booted := bootctl.SlotNone
			if slot == "" {
				// On the appliance itself, the running slot is on the
				// kernel command line.
				if b, err := os.ReadFile("/proc/cmdline"); err == nil {
					if s, err := boot.BootedSlot(string(b)); err == nil {
						booted = s
					}
				}
			} else if booted, err = bootctl.ParseSlot(slot); err != nil {
				return err
			}
			dev, err := flash.OpenDevice(device)
			if err != nil {
				return err
			}
			defer dev.Close()
			f, err := os.Open(payload)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			p := newProgress(cmd.ErrOrStderr())
			rep, err := flash.Update(cmd.Context(), f, fi.Size(), m, policy, dev, flash.UpdateOptions{Booted: booted, RollbackFloor: fl},
				func(ph flash.Phase, done, total int64) { p.update(string(ph), done, total) })
			p.finish()
			if err != nil {
				return err
			}
			printReport(cmd.OutOrStdout(), "installed", device, rep)
			fmt.Fprintf(cmd.OutOrStdout(), "  slot %s boots once on trial at the next boot and commits when the node is healthy\n", rep.Slot)
			return nil
		},
	}
	trust.add(cmd)
	floor.add(cmd)
	cmd.Flags().StringVar(&manifest, "manifest", "", "signed manifest; default SLOTFILE with the extension replaced by .manifest")
	cmd.Flags().StringVar(&slot, "booted-slot", "", "slot the device runs from (A or B); default from /proc/cmdline on the appliance, else the device is offline")
	return cmd
}
