package main

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/hsm/tpm"
	"hallmark/ledger"
	"hallmark/provisioning"
)

func newCACmd() *cobra.Command {
	var tpmAddr string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "An organisation's certificate authority: its root certificate, and issuing node and kiosk certificates",
		Long: `Each organisation of the consortium runs a CA whose SM2 key stays in custody
(a TPM or an HSM; a PEM file only for development). Its self-signed root
certificate goes into the genesis file; it issues the certificates that
name the organisation's node keys (with the TPM attestation the request
carries) and kiosk keys.`,
	}
	cmd.PersistentFlags().StringVar(&tpmAddr, "tpm", envOr(envTPM, tpm.DefaultDevice), "TPM for tpm keys [$"+envTPM+"]")
	cmd.AddCommand(newCAInitCmd(&tpmAddr), newCAIssueCmd(&tpmAddr))
	return cmd
}

// isHSMRef reports whether s is an hsm key reference rather than a file.
func isHSMRef(s string) bool {
	for _, p := range []string{"tpm:", "tpm-sealed:", "dev:", "pkcs11:"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// openOrGenerate opens the key at ref, or creates it when generate is set:
// in custody for an hsm reference, as a PKCS#8 PEM file (development)
// otherwise.
func openOrGenerate(ctx context.Context, ref, tpmAddr string, generate bool) (gm.Signer, func() error, error) {
	if !generate {
		return loadSigner(ctx, ref, tpmAddr)
	}
	if isHSMRef(ref) {
		opts := hsm.Options{TPM: tpm.Config{Addr: tpmAddr}}
		if p := os.Getenv(envPassphrase); p != "" {
			opts.Passphrase = []byte(p)
		}
		s, err := hsm.Generate(ctx, ref, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("generating %s: %w", ref, err)
		}
		return s, s.Close, nil
	}
	if _, err := os.Stat(ref); err == nil {
		return nil, nil, fmt.Errorf("%s exists: drop --generate to use it", ref)
	}
	k, err := gm.GenerateKey(nil)
	if err != nil {
		return nil, nil, err
	}
	b, err := k.MarshalPKCS8PEM()
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(ref, b, 0o600); err != nil {
		return nil, nil, err
	}
	return k, func() error { k.Wipe(); return nil }, nil
}

func keyRefOf(s gm.Signer, fallback string) string {
	if h, ok := s.(hsm.Signer); ok {
		return h.Ref()
	}
	return fallback
}

func writePEM(path, typ string, der []byte) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func newCAInitCmd(tpmAddr *string) *cobra.Command {
	var key, org, out string
	var days int
	var generate bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make the organisation's self-signed root CA certificate",
		Example: `  hallmarkctl ca init --key tpm:handle=auto --generate --org "Tianjin Port" --out port-ca.pem
  hallmarkctl ca init --key port-ca.pem --generate --org "Tianjin Port" --out port-ca.crt   # development: key in a file`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, closeKey, err := openOrGenerate(cmd.Context(), key, *tpmAddr, generate)
			if err != nil {
				return err
			}
			defer closeKey()
			now := time.Now()
			c, err := provisioning.NewRootCA(cmd.Context(), s, org, now.Add(-time.Hour), now.AddDate(0, 0, days))
			if err != nil {
				return err
			}
			if err := writePEM(out, "CERTIFICATE", c.Raw()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "root CA of %s: %s (key %s at %s), valid until %s\n", org, out, s.PublicKey().ID(), keyRefOf(s, key),
				c.NotAfter().UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the CA key: hsm reference or PEM file (required)")
	cmd.Flags().BoolVar(&generate, "generate", false, "create the key first")
	cmd.Flags().StringVar(&org, "org", "", "the organisation's name (required)")
	cmd.Flags().StringVar(&out, "out", "", "where to write the certificate, PEM (required)")
	cmd.Flags().IntVar(&days, "days", 3650, "validity in days")
	for _, f := range []string{"key", "org", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func readRequest(path string) (*provisioning.Request, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%s holds a %s, not a CERTIFICATE REQUEST", path, blk.Type)
		}
		b = blk.Bytes
	}
	return provisioning.ParseRequest(b)
}

func newCAIssueCmd(tpmAddr *string) *cobra.Command {
	var caKey, caCert, csr, out, chainID string
	var days int
	var unattested bool
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate for a node or kiosk request of this organisation",
		Long: `issue checks the request: signed by the key it names (proof of
possession), for this CA's organisation, and, for a node, carrying a TPM
attestation of the key bound to the chain (verified here). The certificate
keeps the identity and attestation extensions.`,
		Example: `  hallmarkctl ca issue --ca-key tpm:handle=0x81000010 --ca-cert port-ca.pem --csr node5.csr --out node5.crt`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := readRequest(csr)
			if err != nil {
				return err
			}
			der, err := readCertificate(caCert)
			if err != nil {
				return fmt.Errorf("--ca-cert: %w", err)
			}
			ca, err := gm.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("--ca-cert: %w", err)
			}
			s, closeKey, err := loadSigner(cmd.Context(), caKey, *tpmAddr)
			if err != nil {
				return err
			}
			defer closeKey()
			now := time.Now()
			c, err := provisioning.Issue(cmd.Context(), s, ca, req, provisioning.IssueOptions{
				NotBefore: now.Add(-5 * time.Minute), NotAfter: now.AddDate(0, 0, days), ChainID: chainID, AllowUnattested: unattested,
			})
			if err != nil {
				return err
			}
			if err := writePEM(out, "CERTIFICATE", c.Raw()); err != nil {
				return err
			}
			att := "none"
			if req.Attestation != nil {
				att = "TPM, attestation key " + req.Attestation.AKID().String()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s certificate %s for key %s of %s (chain %s), serial %s; attestation: %s\n",
				req.Kind, out, ledger.KeyBytes(req.Key).ID(), req.Organisation, req.ChainID, c.SerialNumber().Text(16), att)
			return nil
		},
	}
	cmd.Flags().StringVar(&caKey, "ca-key", "", "the CA key: hsm reference or PEM file (required)")
	cmd.Flags().StringVar(&caCert, "ca-cert", "", "the CA's root certificate (required)")
	cmd.Flags().StringVar(&csr, "csr", "", "the request, PEM or DER (required)")
	cmd.Flags().StringVar(&out, "out", "", "where to write the certificate, PEM (required)")
	cmd.Flags().StringVar(&chainID, "chain-id", "", "refuse a request for another chain")
	cmd.Flags().IntVar(&days, "days", 825, "validity in days (capped at the CA's)")
	cmd.Flags().BoolVar(&unattested, "allow-unattested", false, "issue a node certificate without TPM attestation (development only)")
	for _, f := range []string{"ca-key", "ca-cert", "csr", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

var errNoAttestation = errors.New("the key's custody gives no TPM attestation")
