package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hallmark/firmware/genesis"
	"hallmark/ledger"
	"hallmark/ledger/app"
	"hallmark/ledger/txs"
	"hallmark/provisioning"
)

func newGenesisCmd() *cobra.Command {
	var tpmAddr string
	cmd := &cobra.Command{
		Use:   "genesis",
		Short: "The genesis ceremony: build the consortium's genesis file and have the founding administrators sign it",
		Long: `The founding administrators create the consortium in one file, passed from
one to the next (docs/OPERATIONS.md §6):

  genesis init           start the file: chain id, time, default parameters
  genesis add-org        a founding organisation and its root CA certificate
  genesis add-validator  an initial validator, from the certificate its CA issued
                         (which carries the TPM attestation of its key)
  genesis add-account    an initial account (add-admin: one with the admin role)
  genesis set            parameters (the governance threshold M among them), filter rules
  genesis show           everything in the file, and the digest administrators approve
  genesis sign           an administrator's approval of the digest
  genesis verify         what a node checks: the content and a quorum of approvals

Every step checks its input and refuses what a node would refuse. A change
after the first signature drops the approvals (they were over the old
content); sign last. A node starts only from a file whose approvals reach
the governance threshold.`,
	}
	cmd.PersistentFlags().StringVar(&tpmAddr, "tpm", envOr(envTPM, "/dev/tpmrm0"), "TPM for tpm keys [$"+envTPM+"]")
	cmd.AddCommand(newGenesisInitCmd(), newGenesisAddOrgCmd(), newGenesisAddValidatorCmd(),
		newGenesisAddAccountCmd(false), newGenesisAddAccountCmd(true), newGenesisSetCmd(),
		newGenesisSignCmd(&tpmAddr), newGenesisVerifyCmd(), newGenesisShowCmd())
	return cmd
}

// readGenesisFile reads a genesis file (draft or approved).
func readGenesisFile(path string) (*provisioning.GenesisFile, error) {
	return genesis.Read(path)
}

// writeGenesisFile writes a genesis file in place, atomically.
func writeGenesisFile(path string, g *provisioning.GenesisFile) error {
	b, err := g.Encode()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

// editGenesis applies change to the file at path and reports what it
// dropped.
func editGenesis(cmd *cobra.Command, path string, change func(g *provisioning.GenesisFile) (int, error)) error {
	g, err := readGenesisFile(path)
	if err != nil {
		return err
	}
	dropped, err := change(g)
	if err != nil {
		return err
	}
	if err := writeGenesisFile(path, g); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if dropped > 0 {
		fmt.Fprintf(w, "the change dropped %d approval(s): they were over the previous content; have them signed again\n", dropped)
	}
	d, _ := g.Digest()
	fmt.Fprintf(w, "%s: digest %s\n", path, d)
	return nil
}

func newGenesisInitCmd() *cobra.Command {
	var chainID, at string
	var force bool
	cmd := &cobra.Command{
		Use:     "init FILE",
		Short:   "Start a genesis file for a new chain",
		Example: `  hallmarkctl genesis init genesis.cbor --chain-id customs-port-2026`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t := time.Now()
			if at != "" {
				var err error
				if t, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--time: %w", err)
				}
			}
			if _, err := os.Stat(args[0]); err == nil && !force {
				return fmt.Errorf("%s exists; pass --force to start over", args[0])
			}
			g, err := provisioning.NewGenesis(chainID, t)
			if err != nil {
				return err
			}
			if err := writeGenesisFile(args[0], g); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: chain %s, genesis time %s; next: genesis add-org\n", args[0], chainID, t.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&chainID, "chain-id", "", "the chain id (required)")
	cmd.Flags().StringVar(&at, "time", "", "genesis time, RFC 3339 (default now; the first block comes later)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	_ = cmd.MarkFlagRequired("chain-id")
	return cmd
}

// readCertificate reads one certificate from a PEM or DER file.
func readCertificate(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(b), "-----BEGIN") {
		return pemCertificate(b, path)
	}
	return b, nil
}

func newGenesisAddOrgCmd() *cobra.Command {
	var name, root string
	cmd := &cobra.Command{
		Use:     "add-org FILE",
		Short:   "Add a founding organisation with its root CA certificate (hallmarkctl ca init)",
		Example: `  hallmarkctl genesis add-org genesis.cbor --name "Tianjin Port" --root-ca port-ca.pem`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			der, err := readCertificate(root)
			if err != nil {
				return fmt.Errorf("--root-ca: %w", err)
			}
			return editGenesis(cmd, args[0], func(g *provisioning.GenesisFile) (int, error) { return g.AddOrganisation(name, der) })
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the organisation's name, as its certificates name it (required)")
	cmd.Flags().StringVar(&root, "root-ca", "", "the organisation's root CA certificate, PEM or DER (required)")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("root-ca")
	return cmd
}

func newGenesisAddValidatorCmd() *cobra.Command {
	var certPath, address, version string
	var unattested bool
	cmd := &cobra.Command{
		Use:   "add-validator FILE",
		Short: "Add an initial validator from the node certificate its organisation's CA issued",
		Long: `The certificate (hallmarkctl enrol node request, then ca issue) names the
node's TPM-held key and its organisation, and carries the TPM's attestation
of the key for this chain; all three are checked, and the attestation is
recorded in the genesis file for anyone to check again.`,
		Example: `  hallmarkctl genesis add-validator genesis.cbor --cert node-port.crt --address 198.18.0.1:7400`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			der, err := readCertificate(certPath)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			return editGenesis(cmd, args[0], func(g *provisioning.GenesisFile) (int, error) {
				roots, err := g.RootCAs()
				if err != nil {
					return 0, err
				}
				chain := g.Body.Doc.ChainID
				at := time.UnixMilli(g.Body.Doc.Time)
				add, id, err := provisioning.NodeAdd(der, rootList(roots), chain, address, version, at, unattested)
				if err != nil {
					return 0, err
				}
				n, err := g.AddValidator(add.Peer, der, id.Attestation, provisioning.CheckOptions{RequireAttestation: !unattested})
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "validator %s of %s at %s (TPM-attested: %v)\n", add.Peer.PeerID, add.Peer.Organisation, address, id.Attested)
				}
				return n, err
			})
		},
	}
	cmd.Flags().StringVar(&certPath, "cert", "", "the node's certificate, PEM or DER (required)")
	cmd.Flags().StringVar(&address, "address", "", "host:port of its QUIC endpoint (required)")
	cmd.Flags().StringVar(&version, "software-version", "1", "the node's software version (06_002)")
	cmd.Flags().BoolVar(&unattested, "allow-unattested", false, "accept a key without TPM attestation (development only; production nodes refuse such a genesis)")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("address")
	return cmd
}

func newGenesisAddAccountCmd(adminOnly bool) *cobra.Command {
	var key, pubHex, institution, roles, certPath string
	use, short := "add-account FILE", "Add an initial account"
	if adminOnly {
		use, short = "add-admin FILE", "Add a founding administrator (an account with the admin role)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Example: `  hallmarkctl genesis add-admin genesis.cbor --public-key 04ab… --institution "Tianjin Port"
  hallmarkctl genesis add-account genesis.cbor --key regulator.pem --institution "Regulator" --roles regulator`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pk, err := publicKeyArg(key, pubHex)
			if err != nil {
				return err
			}
			var r ledger.Role
			if adminOnly {
				r = ledger.RoleAdmin
			} else {
				if r, err = parseRoles(roles); err != nil {
					return err
				}
			}
			a := app.GenesisAccount{PublicKey: pk, Institution: institution, Roles: r}
			if certPath != "" {
				if a.Certificate, err = readCertificate(certPath); err != nil {
					return fmt.Errorf("--cert: %w", err)
				}
			}
			return editGenesis(cmd, args[0], func(g *provisioning.GenesisFile) (int, error) {
				n, err := g.AddAccount(a)
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "account %s (%s) with roles %v\n", ledger.Address(pk.ID()), institution, r.Names())
				}
				return n, err
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the account's key: a PEM file or hsm reference (its public half is used)")
	cmd.Flags().StringVar(&pubHex, "public-key", "", "the account's public key, 128 hex digits (X‖Y) or 130 with the 04 prefix")
	cmd.Flags().StringVar(&institution, "institution", "", "the account's institution (required)")
	cmd.Flags().StringVar(&certPath, "cert", "", "a certificate for the key from a founding organisation's CA")
	if !adminOnly {
		cmd.Flags().StringVar(&roles, "roles", "", "comma-separated roles: member, kiosk, issuer, officer, admin, regulator (required)")
		_ = cmd.MarkFlagRequired("roles")
	}
	_ = cmd.MarkFlagRequired("institution")
	return cmd
}

func parseRoles(s string) (ledger.Role, error) {
	var r ledger.Role
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		x, err := ledger.ParseRole(name)
		if err != nil {
			return 0, err
		}
		r |= x
	}
	if r == 0 {
		return 0, errors.New("--roles: name at least one role")
	}
	return r, nil
}

func newGenesisSetCmd() *cobra.Command {
	var threshold uint32
	var epochLength, txWindowMs, baseTimeoutMs, maxTimeoutMs uint64
	var paramsFile, filterFile, at string
	cmd := &cobra.Command{
		Use:   "set FILE",
		Short: "Set the chain parameters (the governance threshold M among them) and the content-filter rules",
		Example: `  hallmarkctl genesis set genesis.cbor --threshold 2 --epoch-length 100
  hallmarkctl genesis set genesis.cbor --params params.json --filter rules.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return editGenesis(cmd, args[0], func(g *provisioning.GenesisFile) (int, error) {
				p := g.Body.Doc.Params
				if paramsFile != "" {
					if err := readStrictJSON(paramsFile, &p); err != nil {
						return 0, fmt.Errorf("--params: %w", err)
					}
				}
				fl := cmd.Flags()
				if fl.Changed("threshold") {
					p.GovThreshold = threshold
				}
				if fl.Changed("epoch-length") {
					p.EpochLength = epochLength
				}
				if fl.Changed("tx-window-ms") {
					p.TxWindowMs = txWindowMs
				}
				if fl.Changed("base-timeout-ms") {
					p.BaseTimeoutMs = baseTimeoutMs
				}
				if fl.Changed("max-timeout-ms") {
					p.MaxTimeoutMs = maxTimeoutMs
				}
				dropped, err := g.SetParams(p)
				if err != nil {
					return 0, err
				}
				if filterFile != "" {
					var r txs.FilterRules
					if err := readStrictJSON(filterFile, &r); err != nil {
						return 0, fmt.Errorf("--filter: %w", err)
					}
					n, err := g.SetFilter(r)
					if err != nil {
						return 0, err
					}
					dropped += n
				}
				if at != "" {
					t, err := time.Parse(time.RFC3339, at)
					if err != nil {
						return 0, fmt.Errorf("--time: %w", err)
					}
					n, err := g.SetTime(t)
					if err != nil {
						return 0, err
					}
					dropped += n
				}
				return dropped, nil
			})
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&threshold, "threshold", 0, "governance threshold M: approvals needed from active administrators")
	f.Uint64Var(&epochLength, "epoch-length", 0, "blocks per epoch (reconfigurations take effect at a multiple)")
	f.Uint64Var(&txWindowMs, "tx-window-ms", 0, "how far a transaction's timestamp may be from its block's")
	f.Uint64Var(&baseTimeoutMs, "base-timeout-ms", 0, "base round timeout")
	f.Uint64Var(&maxTimeoutMs, "max-timeout-ms", 0, "longest round timeout")
	f.StringVar(&paramsFile, "params", "", "every parameter from a JSON file (docs/TRANSACTIONS.md, gov.params)")
	f.StringVar(&filterFile, "filter", "", "content-filter rules from a JSON file (docs/TRANSACTIONS.md §7)")
	f.StringVar(&at, "time", "", "genesis time, RFC 3339")
	return cmd
}

func readStrictJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func newGenesisSignCmd(tpmAddr *string) *cobra.Command {
	var key, digest string
	cmd := &cobra.Command{
		Use:   "sign FILE",
		Short: "Approve the genesis as a founding administrator",
		Long: `sign checks the whole file as a node would, then adds your SM2 signature
over its digest. Compare the digest (genesis show) with the other
administrators out of band first, and pass it with --digest: signing refuses
a file whose digest differs.`,
		Example: `  hallmarkctl genesis sign genesis.cbor --key admin-port.pem --digest 5e1c…`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := readGenesisFile(args[0])
			if err != nil {
				return err
			}
			d, err := g.Digest()
			if err != nil {
				return err
			}
			if digest != "" && !strings.EqualFold(digest, d.String()) {
				return fmt.Errorf("the file's digest is %s, not the %s you agreed on: do not sign; find out what changed", d, digest)
			}
			signer, closeKey, err := loadSigner(cmd.Context(), key, *tpmAddr)
			if err != nil {
				return err
			}
			defer closeKey()
			if err := g.Sign(cmd.Context(), signer, provisioning.CheckOptions{}); err != nil {
				return err
			}
			if err := writeGenesisFile(args[0], g); err != nil {
				return err
			}
			q, err := g.CheckApprovals()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "approved digest %s as %s: %d of %d approvals", d, ledger.KeyBytes(signer.PublicKey()).ID(), len(q.Signed), q.Threshold)
			if q.Reached() {
				fmt.Fprintln(w, " — the genesis is complete; nodes can start from it")
			} else {
				fmt.Fprintln(w)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "your administrator key: PEM file or hsm reference (required)")
	cmd.Flags().StringVar(&digest, "digest", "", "the digest you agreed to approve (refuse anything else)")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func newGenesisVerifyCmd() *cobra.Command {
	var production bool
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a genesis file as a node does: content and a quorum of approvals (exit 1 otherwise)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, g, err := genesis.Load(args[0], provisioning.CheckOptions{RequireAttestation: production})
			if err != nil {
				return err
			}
			d, _ := g.Digest()
			q, _ := g.CheckApprovals()
			fmt.Fprintf(cmd.OutOrStdout(), "%s: chain %s, digest %s: valid, approved by %d of the %d required administrators\n",
				args[0], g.Body.Doc.ChainID, d, len(q.Signed), q.Threshold)
			return nil
		},
	}
	cmd.Flags().BoolVar(&production, "production", false, "also require a TPM attestation for every validator, as production nodes do")
	return cmd
}

func newGenesisShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print a genesis file and the digest administrators approve",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := readGenesisFile(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), g)
			}
			return printGenesis(cmd.OutOrStdout(), g)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printGenesis(w io.Writer, g *provisioning.GenesisFile) error {
	d, err := g.Digest()
	if err != nil {
		return err
	}
	doc := &g.Body.Doc
	p := doc.Params
	fmt.Fprintf(w, "chain      %s\ntime       %s\ndigest     %s   (what administrators approve)\n", doc.ChainID,
		time.UnixMilli(doc.Time).UTC().Format(time.RFC3339), d)
	fmt.Fprintf(w, "governance %d of the administrators\nparameters epoch length %d, tx window %d ms, timeouts %d–%d ms, block ≤ %d txs / %d bytes\n",
		p.GovThreshold, p.EpochLength, p.TxWindowMs, p.BaseTimeoutMs, p.MaxTimeoutMs, p.MaxBlockTxs, p.MaxBlockBytes)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\norganisation\troot CA (SM3 of the certificate)")
	for _, o := range g.Body.Organisations {
		fmt.Fprintf(tw, "%s\t%s\n", o.Name, hex.EncodeToString(sm3(o.RootCA)))
	}
	ev := map[string]*provisioning.ValidatorEvidence{}
	for i := range g.Body.Validators {
		ev[g.Body.Validators[i].PeerID.String()] = &g.Body.Validators[i]
	}
	fmt.Fprintln(tw, "\nvalidator\torganisation\taddress\tcertificate\tTPM attestation")
	for _, v := range doc.Validators {
		e := ev[v.PeerID.String()]
		cert, att := "-", "-"
		if e != nil && len(e.Certificate) > 0 {
			cert = "yes"
		}
		if e != nil && e.Attestation != nil {
			att = "AK " + e.Attestation.AKID().String()[:16]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.PeerID, v.Organisation, v.Address, cert, att)
	}
	fmt.Fprintln(tw, "\naccount (address)\tinstitution\troles")
	for _, a := range doc.Accounts {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ledger.Address(a.PublicKey.ID()), a.Institution, strings.Join(a.Roles.Names(), ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := g.Check(provisioning.CheckOptions{}); err != nil {
		fmt.Fprintf(w, "\nNOT VALID YET: %v\n", err)
		return nil
	}
	q, err := g.CheckApprovals()
	if err != nil {
		fmt.Fprintf(w, "\nAPPROVALS BROKEN: %v\n", err)
		return nil
	}
	fmt.Fprintf(w, "\napprovals  %d of %d required", len(q.Signed), q.Threshold)
	if q.Reached() {
		fmt.Fprintln(w, " — complete")
	} else {
		fmt.Fprintln(w)
	}
	for _, k := range q.Signed {
		fmt.Fprintf(w, "  signed      %s\n", ledger.Address(k.ID()))
	}
	for _, k := range q.Missing {
		fmt.Fprintf(w, "  not signed  %s\n", ledger.Address(k.ID()))
	}
	return nil
}
