package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
	"hallmark/provisioning"
)

func newEnrolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enrol",
		Short: "Enrol nodes and kiosks: key, certificate request, certificate, admission on chain",
		Long: `Node enrolment (docs/OPERATIONS.md §7):
  1. facilities staff, on the new appliance:  enrol node request  (key made in its TPM, attested)
  2. the organisation's CA:                    ca issue
  3. administrators:                           enrol node propose  (gov.node-add; gov approve for more approvals)
  4. the node starts with the genesis and its peers; it follows the chain and
     votes from the epoch boundary after gov.node-add commits.

Kiosk enrolment (§8): enrol kiosk request, ca issue, enrol kiosk register
(account.register with the kiosk role, signed by an administrator and the
kiosk's key).`,
	}
	node := &cobra.Command{Use: "node", Short: "Enrol an appliance as a node"}
	node.AddCommand(newEnrolNodeRequestCmd(), newEnrolNodeProposeCmd())
	kiosk := &cobra.Command{Use: "kiosk", Short: "Enrol a kiosk, rotate its key"}
	kiosk.AddCommand(newEnrolKioskRequestCmd(), newEnrolKioskRegisterCmd(), newKioskRotateKeyCmd())
	cmd.AddCommand(node, kiosk)
	return cmd
}

func newEnrolNodeRequestCmd() *cobra.Command {
	var key, tpmAddr, chainID, org, out string
	var generate bool
	cmd := &cobra.Command{
		Use:   "request",
		Short: "On the new appliance: make the node key in the TPM and a certificate request carrying its attestation",
		Example: `  hallmarkctl enrol node request --key tpm:handle=auto --generate --tpm /dev/tpmrm0 \
      --chain-id customs-port-2026 --org "Tianjin Port" --out node5.csr`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, closeKey, err := openOrGenerate(ctx, key, tpmAddr, generate)
			if err != nil {
				return err
			}
			defer closeKey()
			hs, ok := s.(hsm.Signer)
			if !ok {
				return fmt.Errorf("%w: %s is a key file; a node key must live in the appliance's TPM (--key tpm:handle=auto --generate)", errNoAttestation, key)
			}
			att, err := provisioning.Attest(ctx, hs, chainID)
			if err != nil {
				return fmt.Errorf("%w: %v; a node key must live in the appliance's TPM (--key tpm:handle=auto --generate)", errNoAttestation, err)
			}
			der, err := provisioning.CreateRequest(ctx, s, provisioning.RequestOptions{Kind: provisioning.KindNode, Organisation: org, ChainID: chainID, Attestation: att})
			if err != nil {
				return err
			}
			if err := writePEM(out, "CERTIFICATE REQUEST", der); err != nil {
				return err
			}
			pk := ledger.KeyBytes(s.PublicKey())
			fmt.Fprintf(cmd.OutOrStdout(), "node key %s at %s\npublic key %s\nattestation key %s\nrequest %s: give it to %s's CA (hallmarkctl ca issue --csr %s)\n",
				pk.ID(), keyRefOf(s, key), hex.EncodeToString(pk[:]), att.AKID(), out, org, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "tpm:handle=auto", "the node key: an hsm reference (required)")
	cmd.Flags().BoolVar(&generate, "generate", false, "create the key in the TPM first")
	cmd.Flags().StringVar(&tpmAddr, "tpm", envOr(envTPM, "/dev/tpmrm0"), "the appliance's TPM [$"+envTPM+"]")
	cmd.Flags().StringVar(&chainID, "chain-id", "", "the chain the node joins (required)")
	cmd.Flags().StringVar(&org, "org", "", "the organisation operating the node (required)")
	cmd.Flags().StringVar(&out, "out", "", "where to write the request, PEM (required)")
	for _, f := range []string{"chain-id", "org", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// genesisRoots reads the organisations' root certificates from a genesis
// file.
func genesisRoots(path string) ([]*gm.Certificate, string, error) {
	g, err := readGenesisFile(path)
	if err != nil {
		return nil, "", err
	}
	roots, err := g.RootCAs()
	if err != nil {
		return nil, "", err
	}
	return rootList(roots), g.Body.Doc.ChainID, nil
}

func newEnrolNodeProposeCmd() *cobra.Command {
	f := &ceremonyFlags{}
	var certPath, address, version, genesisPath string
	var unattested bool
	cmd := &cobra.Command{
		Use:   "propose",
		Short: "Administrators: admit an enrolled node (gov.node-add), signed by one or more administrators",
		Long: `propose checks the node's certificate against the founding organisations'
roots in the genesis file (and its TPM attestation), builds gov.node-add
and signs it with every --key. With at least the governance threshold of
administrators it takes effect when it commits; with fewer it is stored as
a proposal that the others approve (hallmarkctl gov approve). The node
becomes a validator at the epoch boundary after it takes effect.`,
		Example: `  hallmarkctl enrol node propose --cert node5.crt --address 198.18.0.5:7400 --genesis genesis.cbor \
      --key admin-port.pem --key admin-customs.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			der, err := readCertificate(certPath)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			roots, chain, err := genesisRoots(genesisPath)
			if err != nil {
				return err
			}
			body, id, err := provisioning.NodeAdd(der, roots, chain, address, version, time.Now(), unattested)
			if err != nil {
				return err
			}
			if f.chain == "" {
				f.chain = chain
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s of %s at %s, TPM-attested: %v\n", body.Peer.PeerID, id.Organisation, address, id.Attested)
			return f.run(cmd, "admit node "+body.Peer.PeerID.String(), body, nil, true)
		},
	}
	f.register(cmd, "an administrator's key")
	cmd.Flags().StringVar(&certPath, "cert", "", "the node's certificate (required)")
	cmd.Flags().StringVar(&address, "address", "", "host:port of the node's QUIC endpoint (required)")
	cmd.Flags().StringVar(&version, "software-version", "1", "the node's software version")
	cmd.Flags().StringVar(&genesisPath, "genesis", "", "the genesis file, for the organisations' roots (required)")
	cmd.Flags().BoolVar(&unattested, "allow-unattested", false, "admit a node whose certificate carries no TPM attestation (development only)")
	for _, n := range []string{"cert", "address", "genesis"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newEnrolKioskRequestCmd() *cobra.Command {
	var key, tpmAddr, chainID, org, out string
	var generate bool
	cmd := &cobra.Command{
		Use:   "request",
		Short: "Make the kiosk's key and a certificate request for it",
		Example: `  hallmarkctl enrol kiosk request --key kiosk-hall3.pem --generate --chain-id customs-port-2026 \
      --org "Tianjin Port" --out kiosk-hall3.csr`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, closeKey, err := openOrGenerate(cmd.Context(), key, tpmAddr, generate)
			if err != nil {
				return err
			}
			defer closeKey()
			der, err := provisioning.CreateRequest(cmd.Context(), s, provisioning.RequestOptions{Kind: provisioning.KindKiosk, Organisation: org, ChainID: chainID})
			if err != nil {
				return err
			}
			if err := writePEM(out, "CERTIFICATE REQUEST", der); err != nil {
				return err
			}
			pk := ledger.KeyBytes(s.PublicKey())
			fmt.Fprintf(cmd.OutOrStdout(), "kiosk key %s (account address %s)\nrequest %s: give it to %s's CA (hallmarkctl ca issue)\n",
				keyRefOf(s, key), ledger.Address(pk.ID()), out, org)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the kiosk's key: PEM file or hsm reference (required)")
	cmd.Flags().BoolVar(&generate, "generate", false, "create the key first")
	cmd.Flags().StringVar(&tpmAddr, "tpm", envOr(envTPM, "/dev/tpmrm0"), "TPM for tpm keys [$"+envTPM+"]")
	cmd.Flags().StringVar(&chainID, "chain-id", "", "the chain (required)")
	cmd.Flags().StringVar(&org, "org", "", "the kiosk's organisation (required)")
	cmd.Flags().StringVar(&out, "out", "", "where to write the request (required)")
	for _, n := range []string{"key", "chain-id", "org", "out"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newEnrolKioskRegisterCmd() *cobra.Command {
	f := &ceremonyFlags{}
	var certPath, genesisPath, kioskKey string
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Administrator: register the kiosk's key as an account with the kiosk role (account.register)",
		Long: `register checks the kiosk certificate against the organisation roots in the
genesis file and submits account.register (role kiosk, the organisation as
institution, the certificate) signed by the administrator (--key) and by the
kiosk's own key (--kiosk-key, proof of possession). Once it commits every
node admits the kiosk's datagrams; before, the fast path drops them. If the
kiosk's key is elsewhere, name it with --signer and write a draft (--out)
for it to sign (hallmarkctl tx sign) within the transaction window.`,
		Example: `  hallmarkctl enrol kiosk register --cert kiosk-hall3.crt --genesis genesis.cbor --key admin-port.pem --kiosk-key kiosk-hall3.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			der, err := readCertificate(certPath)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			roots, chain, err := genesisRoots(genesisPath)
			if err != nil {
				return err
			}
			body, id, err := provisioning.KioskRegistration(der, roots, chain, time.Now())
			if err != nil {
				return err
			}
			if f.chain == "" {
				f.chain = chain
			}
			var extra []gm.Signer
			if kioskKey != "" {
				s, closeKey, err := loadSigner(cmd.Context(), kioskKey, f.tpm)
				if err != nil {
					return err
				}
				defer closeKey()
				if ledger.KeyBytes(s.PublicKey()) != body.PublicKey {
					return fmt.Errorf("--kiosk-key is key %s; the certificate is for %s", s.PublicKey().ID(), body.PublicKey.ID())
				}
				extra = append(extra, s)
			} else if len(f.signers) == 0 {
				return errors.New("the kiosk's key must co-sign: --kiosk-key, or --signer with --out for a draft")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kiosk account %s of %s, certificate serial %s\n", ledger.Address(id.Key.ID()), id.Organisation, id.Serial.Text(16))
			return f.run(cmd, "register kiosk "+ledger.Address(id.Key.ID()).String(), body, nil, true, extra...)
		},
	}
	f.register(cmd, "the administrator's key")
	cmd.Flags().StringVar(&certPath, "cert", "", "the kiosk's certificate (required)")
	cmd.Flags().StringVar(&genesisPath, "genesis", "", "the genesis file, for the organisations' roots (required)")
	cmd.Flags().StringVar(&kioskKey, "kiosk-key", "", "the kiosk's key, to co-sign")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("genesis")
	return cmd
}

func newKioskRotateKeyCmd() *cobra.Command {
	f := &ceremonyFlags{}
	var newKey string
	var generate bool
	cmd := &cobra.Command{
		Use:   "rotate-key",
		Short: "Replace a kiosk's key (account.rotate-key, signed by the old and the new key)",
		Long: `The account keeps its address; nodes admit the new key's datagrams and drop
the old key's as soon as the rotation commits. The account's certificate is
dropped with the old key: have the CA issue one for the new key and update
the registration if your organisation requires it.`,
		Example: `  hallmarkctl enrol kiosk rotate-key --key kiosk-hall3.pem --new-key kiosk-hall3-2027.pem --generate`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, closeKey, err := openOrGenerate(cmd.Context(), newKey, f.tpm, generate)
			if err != nil {
				return err
			}
			defer closeKey()
			if len(f.keys) != 1 {
				return errors.New("--key: the kiosk's current key (exactly one)")
			}
			body := &txs.AccountRotateKey{NewKey: ledger.KeyBytes(s.PublicKey())}
			return f.run(cmd, "rotate kiosk key", body, nil, false, s)
		},
	}
	f.register(cmd, "the kiosk's current key")
	cmd.Flags().StringVar(&newKey, "new-key", "", "the new key: PEM file or hsm reference (required)")
	cmd.Flags().BoolVar(&generate, "generate", false, "create the new key first")
	_ = cmd.MarkFlagRequired("new-key")
	return cmd
}
