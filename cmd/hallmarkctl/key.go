package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/audit"
	"hallmark/hsm/devkeys"
	"hallmark/hsm/tpm"
)

// Environment variables the key commands read.
const (
	envTPM        = "HALLMARK_TPM"
	envAuditLog   = "HALLMARK_KEY_AUDIT_LOG"
	envPassphrase = "HALLMARK_KEY_PASSPHRASE"
	defaultAudit  = "/var/lib/hallmark/keys/audit.log"
)

// keyFlags are the options every key command shares.
type keyFlags struct {
	tpmAddr        string
	tpmTimeout     time.Duration
	auditLog       string
	passphraseFile string
	production     bool
	actor          string
	json           bool
	kdfTime        uint32
	kdfMemoryKiB   uint32
}

func newKeyCmd() *cobra.Command {
	f := &keyFlags{}
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Generate, show, rotate, destroy and list custody keys",
		Long: `Key lifecycle for security officers. A key is named by a reference:

  tpm:handle=0x81000010        SM2 key inside the TPM at a persistent handle
  tpm:handle=auto              (generate, rotate) the first free handle from 0x81000010
  tpm:blob=PATH                SM2 key wrapped by the TPM, in a file
  tpm-sealed:PATH[?pcrs=7,15]  software key sealed by the TPM to PCR values
                               (default PCR ` + strconv.Itoa(hsm.FirmwarePCR) + `, the booted root slot's
                               measurement), for TPMs without SM2
  dev:PATH                     passphrase-encrypted file, development only
  pkcs11:token=T;object=L?module-path=LIB&pin-source=env:VAR&mechanism=0x...

Every operation, failed ones included, is appended to a hash-chained
audit log (--audit-log).`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.tpmAddr, "tpm", envOr(envTPM, tpm.DefaultDevice), "TPM device path or host:port of a TPM command port (swtpm) [$"+envTPM+"]")
	pf.DurationVar(&f.tpmTimeout, "tpm-timeout", 5*time.Second, "how long to keep trying to reach the TPM")
	pf.StringVar(&f.auditLog, "audit-log", envOr(envAuditLog, defaultAudit), "lifecycle audit log [$"+envAuditLog+"]")
	pf.StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the dev-key passphrase (else $"+envPassphrase+")")
	pf.BoolVar(&f.production, "production", false, "this node runs in production: refuse dev keys")
	pf.StringVar(&f.actor, "actor", defaultActor(), "who performs the operation, for the audit log")
	pf.BoolVar(&f.json, "json", false, "print JSON")
	cmd.AddCommand(
		newKeyGenerateCmd(f), newKeyShowCmd(f), newKeyRotateCmd(f), newKeyResealCmd(f),
		newKeyDestroyCmd(f), newKeyListCmd(f), newKeyAuditCmd(f),
	)
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func defaultActor() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// options builds hsm.Options from the flags. needPassphrase asks for the
// dev passphrase only when a dev key is involved.
func (f *keyFlags) options(needPassphrase bool) (hsm.Options, error) {
	log, err := audit.Open(f.auditLog)
	if err != nil {
		return hsm.Options{}, fmt.Errorf("opening the audit log: %w", err)
	}
	opts := hsm.Options{
		TPM:        tpm.Config{Addr: f.tpmAddr, RetryFor: f.tpmTimeout},
		Production: f.production,
		Audit:      log,
		Actor:      f.actor,
	}
	if f.kdfTime != 0 || f.kdfMemoryKiB != 0 {
		p := devkeys.DefaultParams()
		if f.kdfTime != 0 {
			p.Time = f.kdfTime
		}
		if f.kdfMemoryKiB != 0 {
			p.MemoryKiB = f.kdfMemoryKiB
		}
		opts.DevKDF = p
	}
	if needPassphrase {
		if opts.Passphrase, err = f.passphrase(); err != nil {
			return hsm.Options{}, err
		}
	}
	return opts, nil
}

func (f *keyFlags) passphrase() ([]byte, error) {
	if f.passphraseFile != "" {
		b, err := os.ReadFile(f.passphraseFile)
		if err != nil {
			return nil, fmt.Errorf("reading the passphrase: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("passphrase file %s is empty", f.passphraseFile)
		}
		return b, nil
	}
	if v := os.Getenv(envPassphrase); v != "" {
		return []byte(v), nil
	}
	return nil, fmt.Errorf("a dev key needs a passphrase: pass --passphrase-file or set %s", envPassphrase)
}

func involvesDev(refs ...string) bool {
	for _, r := range refs {
		if strings.HasPrefix(r, string(hsm.KindDev)+":") {
			return true
		}
	}
	return false
}

// releaseFlags name the release a tpm-sealed key is sealed to.
type releaseFlags struct {
	manifest  string
	trust     string
	threshold int
}

func (r *releaseFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&r.manifest, "for-manifest", "", what)
	cmd.Flags().StringVar(&r.trust, "trust", "", "with --for-manifest: PEM file of the trusted release keys")
	cmd.Flags().IntVar(&r.threshold, "threshold", 0, "with --for-manifest: how many trusted keys must have signed it")
}

// values returns the PCR values the release of the manifest produces
// once booted. The manifest must carry the threshold of trusted release
// signatures: a key sealed to an unreleased image would open under it.
func (r *releaseFlags) values() (hsm.PCRValues, error) {
	if r.trust == "" || r.threshold == 0 {
		return nil, errors.New("--for-manifest needs --trust and --threshold: a key is sealed only to a properly signed release")
	}
	m, err := readManifest(r.manifest)
	if err != nil {
		return nil, err
	}
	policy, err := readTrust(r.trust, r.threshold)
	if err != nil {
		return nil, err
	}
	if _, err := m.Verify(policy); err != nil {
		return nil, fmt.Errorf("%s: %w", r.manifest, err)
	}
	return m.Body.Firmware.PCRValues(), nil
}

func newKeyGenerateCmd(f *keyFlags) *cobra.Command {
	var rel releaseFlags
	cmd := &cobra.Command{
		Use:   "generate REF",
		Short: "Create a new key at REF (never replaces one)",
		Long: `generate creates a new key at REF and opens it, proving that its
custody works. With --for-manifest, a tpm-sealed key is sealed instead to
the PCR values the manifest's release produces once it has booted: how a
device is provisioned with a key that only that release can open.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(involvesDev(args[0]))
			if err != nil {
				return err
			}
			if rel.manifest != "" {
				values, err := rel.values()
				if err != nil {
					return err
				}
				info, err := hsm.GenerateSealedTo(cmd.Context(), args[0], values, opts)
				if err != nil {
					return explain(err, f)
				}
				return printInfo(cmd.OutOrStdout(), f, info)
			}
			s, err := hsm.Generate(cmd.Context(), args[0], opts)
			if err != nil {
				return explain(err, f)
			}
			defer s.Close()
			return printInfo(cmd.OutOrStdout(), f, &hsm.KeyInfo{Ref: s.Ref(), Custody: s.Custody(), PublicKey: s.PublicKey().String(), KeyID: s.KeyID()})
		},
	}
	cmd.Flags().Uint32Var(&f.kdfTime, "kdf-time", 0, "dev keys: Argon2id passes (default 3)")
	cmd.Flags().Uint32Var(&f.kdfMemoryKiB, "kdf-memory", 0, "dev keys: Argon2id memory in KiB (default 65536)")
	rel.add(cmd, "tpm-sealed keys: seal to the release of this signed manifest instead of the current PCR values")
	return cmd
}

func newKeyResealCmd(f *keyFlags) *cobra.Command {
	var rel releaseFlags
	cmd := &cobra.Command{
		Use:   "reseal REF NEW-REF --for-manifest MANIFEST",
		Short: "Seal the tpm-sealed key at REF to the release an update installs, at NEW-REF",
		Long: `reseal opens the tpm-sealed key at REF (so it runs on the device, under
the release the key is sealed to) and writes the same key to NEW-REF,
sealed to the PCR values the manifest's release produces once it has
booted. Run it before "hallmarkctl update" with that release, and keep REF:
it is the key of the slot a failed update falls back to.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rel.manifest == "" {
				return errors.New("--for-manifest is required: the release the key is resealed to")
			}
			values, err := rel.values()
			if err != nil {
				return err
			}
			opts, err := f.options(false)
			if err != nil {
				return err
			}
			info, err := hsm.ResealTo(cmd.Context(), args[0], args[1], values, opts)
			if err != nil {
				return explain(err, f)
			}
			return printInfo(cmd.OutOrStdout(), f, info)
		},
	}
	rel.add(cmd, "signed manifest of the release to reseal the key to")
	return cmd
}

func newKeyShowCmd(f *keyFlags) *cobra.Command {
	var nonceHex string
	cmd := &cobra.Command{
		Use:   "show REF",
		Short: "Open the key and show its public key, key id, custody and attestation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nonce, err := hex.DecodeString(nonceHex)
			if err != nil {
				return fmt.Errorf("--nonce: %w", err)
			}
			opts, err := f.options(involvesDev(args[0]))
			if err != nil {
				return err
			}
			info, err := hsm.Describe(cmd.Context(), args[0], nonce, opts)
			if err != nil {
				return explain(err, f)
			}
			return printInfo(cmd.OutOrStdout(), f, info)
		},
	}
	cmd.Flags().StringVar(&nonceHex, "nonce", "", "hex nonce to bind into the TPM attestation")
	return cmd
}

func newKeyRotateCmd(f *keyFlags) *cobra.Command {
	var chainID, reason, out string
	var destroyOld bool
	cmd := &cobra.Command{
		Use:   "rotate OLD-REF NEW-REF",
		Short: "Create a new key in the same custody and a rotation statement signed by both keys",
		Long: `rotate creates a key at NEW-REF (same custody kind as OLD-REF) and a
rotation statement signed by the old and the new key: the canonical CBOR
body of the gov.node-rotate-key transaction that administrators put on
chain (docs/TRANSACTIONS.md), for the chain --chain-id. The old key is kept
unless --destroy-old is given; destroy it once the rotation is in force.

This works on a key no running node holds. A running node rotates its own
key through its API instead (hallmarkctl node-key rotate): it must hold
both keys across the epoch boundary.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(involvesDev(args...))
			if err != nil {
				return err
			}
			st, next, err := hsm.Rotate(cmd.Context(), args[0], args[1], hsm.RotateOptions{ChainID: chainID, Reason: reason}, opts)
			if err != nil {
				return explain(err, f)
			}
			defer next.Close()
			enc, err := hsm.EncodeRotation(st)
			if err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, enc, 0o644); err != nil {
					return fmt.Errorf("writing the rotation statement: %w", err)
				}
			}
			w := cmd.OutOrStdout()
			if f.json {
				if err := writeJSON(w, map[string]any{"statement": st, "statementCbor": hex.EncodeToString(enc), "newRef": next.Ref()}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(w, "old key:   %s\nnew key:   %s\nnew ref:   %s\nstatement: %s\n", st.Statement.Old.ID(), next.KeyID(), next.Ref(), hex.EncodeToString(enc))
				if out != "" {
					fmt.Fprintf(w, "written:   %s\n", out)
				}
			}
			if destroyOld {
				// A TPM without a resource manager serves one
				// connection at a time: release the new key's first.
				next.Close()
				id, err := hsm.Destroy(cmd.Context(), args[0], opts)
				if err != nil {
					return fmt.Errorf("the rotation succeeded but destroying the old key failed: %w", explain(err, f))
				}
				if !f.json {
					fmt.Fprintf(w, "destroyed: %s (%s)\n", args[0], id)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&chainID, "chain-id", "", "chain the statement is meant for (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why the key is rotated (recorded in the statement)")
	cmd.Flags().StringVar(&out, "out", "", "write the statement's CBOR to this file")
	cmd.Flags().BoolVar(&destroyOld, "destroy-old", false, "destroy the old key after the rotation")
	return cmd
}

func newKeyDestroyCmd(f *keyFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "destroy REF",
		Short: "Destroy the key at REF (evict it from the TPM, delete its file or HSM objects)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("destroying %s cannot be undone; pass --yes to confirm", args[0])
			}
			opts, err := f.options(false)
			if err != nil {
				return err
			}
			id, err := hsm.Destroy(cmd.Context(), args[0], opts)
			if err != nil {
				return explain(err, f)
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"ref": args[0], "keyId": id, "destroyed": true})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "destroyed %s (key id %s)\n", args[0], id)
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the destruction")
	return cmd
}

func newKeyListCmd(f *keyFlags) *cobra.Command {
	var dirs []string
	var noTPM bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List SM2 keys at the TPM's persistent handles and key files in directories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(false)
			if err != nil {
				return err
			}
			keys, err := hsm.List(cmd.Context(), hsm.ListOptions{TPM: !noTPM, Dirs: dirs}, opts)
			if err != nil {
				return explain(err, f)
			}
			w := cmd.OutOrStdout()
			if f.json {
				return writeJSON(w, keys)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CUSTODY\tKEY ID\tREF")
			for _, k := range keys {
				id := k.KeyID.String()
				if k.Error != "" {
					id = "error: " + k.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Custody, id, k.Ref)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringArrayVar(&dirs, "dir", nil, "directory of key files to list (repeatable)")
	cmd.Flags().BoolVar(&noTPM, "no-tpm", false, "do not look at the TPM")
	return cmd
}

func newKeyAuditCmd(f *keyFlags) *cobra.Command {
	auditCmd := &cobra.Command{Use: "audit", Short: "Inspect the key lifecycle audit log"}
	var head string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain (and, given --head, that nothing was cut from its end)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var expect *audit.Head
			if head != "" {
				h, err := parseHead(head)
				if err != nil {
					return err
				}
				expect = &h
			}
			entries, got, err := audit.VerifyFile(f.auditLog, expect)
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"entries": len(entries), "head": got})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d entries, chain intact\nhead: %d:%s\n", f.auditLog, len(entries), got.Seq, got.Hash)
			return nil
		},
	}
	verify.Flags().StringVar(&head, "head", "", "a head recorded earlier, as SEQ:HASH")
	auditCmd.AddCommand(verify)
	return auditCmd
}

func parseHead(s string) (audit.Head, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return audit.Head{}, fmt.Errorf("--head %q: want SEQ:HASH", s)
	}
	d, err := gm.ParseDigest(hash)
	if err != nil {
		return audit.Head{}, fmt.Errorf("--head %q: %w", s, err)
	}
	return audit.Head{Seq: n, Hash: d}, nil
}

func printInfo(w io.Writer, f *keyFlags, info *hsm.KeyInfo) error {
	if f.json {
		return writeJSON(w, info)
	}
	fmt.Fprintf(w, "ref:        %s\ncustody:    %s\nkey id:     %s\npublic key: %s\n", info.Ref, info.Custody, info.KeyID, info.PublicKey)
	for _, k := range slices.Sorted(maps.Keys(info.Detail)) {
		fmt.Fprintf(w, "%-11s %s\n", k+":", info.Detail[k])
	}
	if info.Attestation != nil {
		fmt.Fprintf(w, "attestation: %s (use --json for the evidence)\n", info.Attestation.Format)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// explain adds what an officer should do next to the errors they will
// meet.
func explain(err error, f *keyFlags) error {
	var hint string
	switch {
	case errors.Is(err, hsm.ErrTPMUnreachable):
		hint = fmt.Sprintf("no TPM answers at %s. On an appliance the TPM is %s; for swtpm pass --tpm 127.0.0.1:PORT (or set %s). `key list --no-tpm` lists key files without a TPM.", f.tpmAddr, tpm.DefaultDevice, envTPM)
	case errors.Is(err, hsm.ErrNoSM2):
		hint = "this TPM cannot hold SM2 keys. Keep a software key sealed by the TPM instead:\n  hallmarkctl key generate tpm-sealed:/var/lib/hallmark/keys/node.sealed"
	case errors.Is(err, hsm.ErrPCRState):
		hint = "the PCRs differ from when the key was sealed: another firmware image or boot chain was measured. Boot the image the key was sealed under, or rotate to a key sealed under this one."
	case errors.Is(err, hsm.ErrWrongTPM):
		hint = "sealed and wrapped keys load only on the TPM that made them (and not after its owner hierarchy was cleared)."
	case errors.Is(err, hsm.ErrWrongPassphrase):
		hint = fmt.Sprintf("check the passphrase (--passphrase-file or %s); for pkcs11 keys, the PIN.", envPassphrase)
	case errors.Is(err, hsm.ErrKeyNotFound):
		hint = "`hallmarkctl key list` shows the keys on the TPM and, with --dir, in a key directory."
	case errors.Is(err, hsm.ErrKeyExists):
		hint = "keys are never replaced: choose another reference (tpm:handle=auto picks a free handle), or destroy the old key first."
	case errors.Is(err, hsm.ErrProduction):
		hint = "production nodes keep keys in tpm, tpm-sealed or pkcs11 custody."
	case errors.Is(err, hsm.ErrBadRef):
		hint = "see `hallmarkctl key --help` for the reference forms."
	}
	if hint == "" {
		return err
	}
	return fmt.Errorf("%w\nhint: %s", err, hint)
}
