package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"hallmark/client"
	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
)

// submitFlags are shared by the submit commands.
type submitFlags struct {
	api   string
	key   string
	tpm   string
	wait  time.Duration
	memo  string
	chain string
}

func newSubmitCmd() *cobra.Command {
	f := &submitFlags{}
	cmd := &cobra.Command{
		Use:   "submit",
		Short: "Sign and submit transactions to a node's HTTP API",
		Long: `Builds a transaction, signs it with --key (a PKCS#8 PEM file such as the
development accounts make run writes to run/keys, or an hsm key reference),
submits it to --api and, with --wait, waits until it commits and prints its
result. Administrative transactions (freeze, unfreeze) go to the admin
endpoint in a request signed with the same key.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.api, "api", envOr(envAPI, defaultAPI), "node API URL [$"+envAPI+"]")
	pf.StringVar(&f.key, "key", "", "signing key: PEM file or hsm reference (required)")
	pf.StringVar(&f.tpm, "tpm", envOr(envTPM, "/dev/tpmrm0"), "TPM for tpm keys [$"+envTPM+"]")
	pf.DurationVar(&f.wait, "wait", 30*time.Second, "wait this long for the commit (0: do not wait)")
	pf.StringVar(&f.memo, "memo", "", "memo (04_004)")
	pf.StringVar(&f.chain, "chain", "", "chain id (default: ask the node)")
	cmd.AddCommand(newSubmitRecordCmd(f), newSubmitFreezeCmd(f, true), newSubmitFreezeCmd(f, false), newSubmitRawCmd(f))
	return cmd
}

func newSubmitRecordCmd(f *submitFlags) *cobra.Command {
	var recordType, subject, digest, text, document string
	cmd := &cobra.Command{
		Use:   "record",
		Short: "Store a record (record.put) naming its document by SM3 digest",
		Example: `  hallmarkctl submit record --key run/keys/kiosk.pem --type customs.declaration --text "declaration 2026-0001"
  hallmarkctl submit record --key run/keys/kiosk.pem --type customs.scan --document scan.pdf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var d gm.Digest
			switch {
			case digest != "":
				if err := d.UnmarshalText([]byte(digest)); err != nil {
					return fmt.Errorf("--digest: %w", err)
				}
			case document != "":
				b, err := os.ReadFile(document)
				if err != nil {
					return err
				}
				d = gm.SM3(b)
			case text != "":
				d = gm.SM3([]byte(text))
			default:
				return errors.New("give the document: --document FILE, --text STRING or --digest HEX")
			}
			return f.run(cmd, ledger.TxRecordPut, nil, func(self ledger.Address) (txs.Body, error) {
				subj := self
				if subject != "" {
					if err := subj.UnmarshalText([]byte(subject)); err != nil {
						return nil, fmt.Errorf("--subject: %w", err)
					}
				}
				return &txs.RecordPut{RecordType: recordType, Subject: subj, Digest: &d}, nil
			}, false)
		},
	}
	cmd.Flags().StringVar(&recordType, "type", "", "record type, e.g. customs.declaration (required)")
	cmd.Flags().StringVar(&subject, "subject", "", "address the record is about (default: the signer's)")
	cmd.Flags().StringVar(&digest, "digest", "", "SM3 digest of the document, hex")
	cmd.Flags().StringVar(&document, "document", "", "file whose SM3 digest is recorded (the file stays with you)")
	cmd.Flags().StringVar(&text, "text", "", "text whose SM3 digest is recorded")
	_ = cmd.MarkFlagRequired("type")
	return cmd
}

func newSubmitFreezeCmd(f *submitFlags, freeze bool) *cobra.Command {
	var account, why string
	use, typ := "freeze", ledger.TxAccountFreeze
	short := "Freeze an account (account.freeze; admin or regulator, admin endpoint)"
	if !freeze {
		use, typ = "unfreeze", ledger.TxAccountUnfreeze
		short = "Unfreeze an account (account.unfreeze; admin or regulator, admin endpoint)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var addr ledger.Address
			if err := addr.UnmarshalText([]byte(account)); err != nil {
				return fmt.Errorf("--account: %w", err)
			}
			return f.run(cmd, typ, &addr, func(ledger.Address) (txs.Body, error) {
				if freeze {
					return &txs.AccountFreeze{Reason: why}, nil
				}
				return &txs.AccountUnfreeze{Reason: why}, nil
			}, true)
		},
	}
	cmd.Flags().StringVar(&account, "account", "", "address of the account (required)")
	cmd.Flags().StringVar(&why, "reason", "", "reason, kept on chain (required)")
	_ = cmd.MarkFlagRequired("account")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func newSubmitRawCmd(f *submitFlags) *cobra.Command {
	var admin bool
	cmd := &cobra.Command{
		Use:   "raw FILE",
		Short: "Submit a transaction already signed, in its JSON form (docs/API.md)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var tx ledger.Transaction
			if err := json.Unmarshal(b, &tx); err != nil {
				return err
			}
			return f.send(cmd, &tx, admin)
		},
	}
	cmd.Flags().BoolVar(&admin, "admin", false, "submit to the admin endpoint, the request signed with --key")
	return cmd
}

// run builds a transaction of typ with the body body gives, signs it and
// sends it.
func (f *submitFlags) run(cmd *cobra.Command, typ ledger.TxType, recipient *ledger.Address, body func(self ledger.Address) (txs.Body, error), admin bool) error {
	ctx := cmd.Context()
	if f.key == "" {
		return errors.New("--key is required")
	}
	signer, closeKey, err := loadSigner(ctx, f.key, f.tpm)
	if err != nil {
		return err
	}
	defer closeKey()
	c := newAPIClient(f.api)
	chain := f.chain
	if chain == "" {
		if chain, err = c.chainID(ctx); err != nil {
			return fmt.Errorf("asking %s for its chain: %w", c.base, err)
		}
	}
	b, err := body(ledger.AddressOf(signer.PublicKey()))
	if err != nil {
		return err
	}
	data, err := txs.Encode(b)
	if err != nil {
		return err
	}
	tx, err := client.NewTransaction(ctx, signer, client.TxParams{ChainID: chain, Type: typ, Recipient: recipient, Data: data, Memo: f.memo})
	if err != nil {
		return err
	}
	return f.sendWith(cmd, c, tx, admin, signer, chain)
}

func (f *submitFlags) send(cmd *cobra.Command, tx *ledger.Transaction, admin bool) error {
	var signer gm.Signer
	if admin {
		if f.key == "" {
			return errors.New("--admin needs --key to sign the request")
		}
		s, closeKey, err := loadSigner(cmd.Context(), f.key, f.tpm)
		if err != nil {
			return err
		}
		defer closeKey()
		signer = s
	}
	return f.sendWith(cmd, newAPIClient(f.api), tx, admin, signer, tx.Body.ChainID)
}

func (f *submitFlags) sendWith(cmd *cobra.Command, c *apiClient, tx *ledger.Transaction, admin bool, signer gm.Signer, chain string) error {
	ctx := cmd.Context()
	body, err := json.Marshal(tx)
	if err != nil {
		return err
	}
	path := "/v1/transactions"
	var reqSigner gm.Signer
	if admin {
		path, reqSigner = "/v1/admin/transactions", signer
	}
	resp, _, err := c.do(ctx, "POST", path, body, "application/json", reqSigner, chain)
	if err != nil {
		return err
	}
	var ans struct {
		ID     string `json:"transactionId"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(resp, &ans); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "transaction %s %s by %s\n", ans.ID, ans.Status, c.base)
	if f.wait <= 0 {
		return nil
	}
	return waitCommit(ctx, cmd, c, ans.ID, f.wait)
}

// waitCommit polls until the transaction commits and prints its result.
func waitCommit(ctx context.Context, cmd *cobra.Command, c *apiClient, id string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		b, code, err := c.do(ctx, "GET", "/v1/transactions/"+id, nil, "", nil, "")
		if err == nil && code == 200 {
			var st struct {
				Status string `json:"status"`
				Height uint64 `json:"blockHeight"`
				Result *struct {
					Code   uint16 `json:"code"`
					Reason string `json:"reason"`
				} `json:"result"`
			}
			if json.Unmarshal(b, &st) == nil && st.Status == "committed" {
				res := "ok"
				if st.Result != nil && st.Result.Code != 0 {
					res = fmt.Sprintf("failed: %s (code %d)", st.Result.Reason, st.Result.Code)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "committed at height %d: %s\n", st.Height, res)
				if st.Result != nil && st.Result.Code != 0 {
					return errors.New("the transaction failed")
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not committed within %v (query it later: hallmarkctl query tx %s)", wait, id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
