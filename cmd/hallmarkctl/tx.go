package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
	"hallmark/provisioning"
)

func newTxCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tx",
		Short: "Sign, inspect and submit transaction drafts that several parties sign",
		Long: `A draft is a transaction whose signers are fixed (the transaction id covers
them) and whose signatures are collected one by one from a file: a
governance action carrying every administrator's approval at once, or an
account registration co-signed by the key it installs. Commands that make
ceremony transactions write a draft with --out (naming the other signers
with --signer). The chain accepts a transaction only within its window
(5 minutes by default) of its timestamp: for slower ceremonies, submit the
action with the approvals at hand and collect the rest with gov approve.`,
	}
	cmd.AddCommand(newTxSignCmd(), newTxShowCmd(), newTxSubmitCmd())
	return cmd
}

func newTxSignCmd() *cobra.Command {
	var keys []string
	var tpmAddr string
	cmd := &cobra.Command{
		Use:   "sign DRAFT",
		Short: "Add your signature to a draft (check it with tx show first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keys) == 0 {
				return errors.New("--key is required")
			}
			d, err := readDraft(args[0])
			if err != nil {
				return err
			}
			signers, closeKeys, err := openSigners(cmd.Context(), keys, tpmAddr)
			if err != nil {
				return err
			}
			defer closeKeys()
			for _, s := range signers {
				if err := d.Sign(cmd.Context(), s); err != nil {
					return err
				}
			}
			if err := writeDraft(args[0], d); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed transaction %s; %d signature(s) still missing\n", d.ID(), len(d.Missing()))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keys, "key", nil, "your key: PEM file or hsm reference (repeatable)")
	cmd.Flags().StringVar(&tpmAddr, "tpm", envOr(envTPM, "/dev/tpmrm0"), "TPM for tpm keys [$"+envTPM+"]")
	return cmd
}

func newTxShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show DRAFT",
		Short: "Print what a draft would do and who has signed it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := readDraft(args[0])
			if err != nil {
				return err
			}
			b := d.TxBody()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "transaction %s\ndescription %s\ntype        %s\nchain       %s\ntime        %s (%s ago)\nsender      %s\n",
				d.ID(), d.Description, b.Type, b.ChainID, time.UnixMilli(b.Timestamp).UTC().Format(time.RFC3339),
				time.Since(time.UnixMilli(b.Timestamp)).Round(time.Second), b.Entity.Sender)
			if b.Entity.Recipient != nil {
				fmt.Fprintf(w, "recipient   %s\n", *b.Entity.Recipient)
			}
			if b.Entity.Memo != "" {
				fmt.Fprintf(w, "memo        %s\n", b.Entity.Memo)
			}
			if body, err := txs.Decode(b.Type, b.Entity.Data); err == nil {
				j, _ := json.MarshalIndent(body, "            ", "  ")
				fmt.Fprintf(w, "body        %s\n", j)
			} else {
				fmt.Fprintf(w, "body        does not decode: %v\n", err)
			}
			missing := map[ledger.PublicKeyBytes]bool{}
			for _, k := range d.Missing() {
				missing[k] = true
			}
			for _, k := range b.Signers {
				state := "signed"
				if missing[k] {
					state = "NOT SIGNED"
				}
				fmt.Fprintf(w, "signer      %s  %s\n", ledger.Address(k.ID()), state)
			}
			return nil
		},
	}
	return cmd
}

func newTxSubmitCmd() *cobra.Command {
	var api, key, tpmAddr string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "submit DRAFT",
		Short: "Submit a draft once every signer has signed",
		Long: `Administrative transactions (account registration, freezing, governance) go
to the node's admin endpoint in a request signed with --key, an account
holding the needed role.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := readDraft(args[0])
			if err != nil {
				return err
			}
			tx, err := d.Transaction(time.Now(), 0)
			if err != nil {
				return err
			}
			var reqSigner gm.Signer
			if isAdminType(tx.Body.Type) {
				if key == "" {
					return fmt.Errorf("%s goes to the admin endpoint: sign the request with --key (an account with the needed role)", tx.Body.Type)
				}
				s, closeKey, err := loadSigner(cmd.Context(), key, tpmAddr)
				if err != nil {
					return err
				}
				defer closeKey()
				reqSigner = s
			}
			err = submitAndReport(cmd, newAPIClient(api), tx, reqSigner, wait)
			if err != nil && strings.Contains(err.Error(), "too-old") {
				err = fmt.Errorf("%w\n(the draft's time window has passed: %v)", err, provisioning.ErrDraft)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&api, "api", envOr(envAPI, defaultAPI), "node API URL [$"+envAPI+"]")
	cmd.Flags().StringVar(&key, "key", "", "key that signs the admin request (admin transactions)")
	cmd.Flags().StringVar(&tpmAddr, "tpm", envOr(envTPM, "/dev/tpmrm0"), "TPM for tpm keys [$"+envTPM+"]")
	cmd.Flags().DurationVar(&wait, "wait", 60*time.Second, "wait this long for the commit (0: do not wait)")
	return cmd
}

// isAdminType reports whether the node takes t only at its admin endpoint
// (docs/API.md).
func isAdminType(t ledger.TxType) bool {
	switch {
	case t == ledger.TxAccountFreeze, t == ledger.TxAccountUnfreeze, t == ledger.TxRecordMask,
		t == ledger.TxAccountRegister, t == ledger.TxAccountSetRoles:
		return true
	}
	return t>>8 == 0x06
}
