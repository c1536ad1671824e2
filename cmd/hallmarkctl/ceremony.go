package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hallmark/gm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
	"hallmark/provisioning"
)

// ceremonyFlags are shared by the commands that build, sign and submit a
// ceremony's transaction: the node to talk to, the keys that sign here,
// signers elsewhere (the transaction is then written as a draft for them).
type ceremonyFlags struct {
	api     string
	keys    []string
	signers []string
	tpm     string
	wait    time.Duration
	out     string
	chain   string
	memo    string
	sender  string
}

func (f *ceremonyFlags) register(cmd *cobra.Command, keyUsage string) {
	fl := cmd.Flags()
	fl.StringVar(&f.api, "api", envOr(envAPI, defaultAPI), "node API URL [$"+envAPI+"]")
	fl.StringArrayVar(&f.keys, "key", nil, keyUsage+": PEM file or hsm reference (repeat for several)")
	fl.StringArrayVar(&f.signers, "signer", nil, "another signer's public key (128 hex digits, or a PEM key or certificate file) who signs the draft elsewhere (repeat); needs --out")
	fl.StringVar(&f.tpm, "tpm", envOr(envTPM, "/dev/tpmrm0"), "TPM for tpm keys [$"+envTPM+"]")
	fl.DurationVar(&f.wait, "wait", 60*time.Second, "wait this long for the commit (0: do not wait)")
	fl.StringVar(&f.out, "out", "", "write the transaction as a draft for other signers (hallmarkctl tx sign) instead of submitting it")
	fl.StringVar(&f.chain, "chain", "", "chain id (default: ask the node)")
	fl.StringVar(&f.memo, "memo", "", "memo (04_004)")
	fl.StringVar(&f.sender, "sender", "", "sending account's address, if the first key's account has rotated its key since it was registered")
}

// openSigners opens every key reference.
func openSigners(ctx context.Context, refs []string, tpmAddr string) ([]gm.Signer, func(), error) {
	var out []gm.Signer
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, ref := range refs {
		s, c, err := loadSigner(ctx, ref, tpmAddr)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		out, closers = append(out, s), append(closers, c)
	}
	return out, closeAll, nil
}

// publicKeyArg returns a public key from a key (PEM file or hsm reference,
// whose public half is used) or from hex.
func publicKeyArg(key, pubHex string) (ledger.PublicKeyBytes, error) {
	switch {
	case key != "" && pubHex != "":
		return ledger.PublicKeyBytes{}, errors.New("give --key or --public-key, not both")
	case pubHex != "":
		return parsePublicKeyHex(pubHex)
	case key != "":
		return publicKeyOf(key)
	}
	return ledger.PublicKeyBytes{}, errors.New("give the key: --key FILE|REF or --public-key HEX")
}

func parsePublicKeyHex(s string) (ledger.PublicKeyBytes, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return ledger.PublicKeyBytes{}, fmt.Errorf("public key: %w", err)
	}
	k, err := gm.ParsePublicKey(b)
	if err != nil {
		return ledger.PublicKeyBytes{}, fmt.Errorf("public key: %w", err)
	}
	return ledger.KeyBytes(k), nil
}

// publicKeyOf reads the public key of a signer argument: hex, a PEM
// private key or certificate file, or an hsm reference (opened).
func publicKeyOf(arg string) (ledger.PublicKeyBytes, error) {
	if b, err := os.ReadFile(arg); err == nil {
		if strings.Contains(string(b), "CERTIFICATE") {
			der, err := pemCertificate(b, arg)
			if err != nil {
				return ledger.PublicKeyBytes{}, err
			}
			c, err := gm.ParseCertificate(der)
			if err != nil {
				return ledger.PublicKeyBytes{}, err
			}
			return ledger.KeyBytes(c.PublicKey()), nil
		}
		if strings.Contains(string(b), "PRIVATE KEY") {
			k, err := gm.ParsePKCS8PEM(b)
			if err != nil {
				return ledger.PublicKeyBytes{}, fmt.Errorf("%s: %w", arg, err)
			}
			defer k.Wipe()
			return ledger.KeyBytes(k.PublicKey()), nil
		}
	}
	if pk, err := parsePublicKeyHex(arg); err == nil {
		return pk, nil
	}
	s, closeKey, err := loadSigner(context.Background(), arg, envOr(envTPM, "/dev/tpmrm0"))
	if err != nil {
		return ledger.PublicKeyBytes{}, err
	}
	defer closeKey()
	return ledger.KeyBytes(s.PublicKey()), nil
}

func pemCertificate(b []byte, name string) ([]byte, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("%s: no CERTIFICATE block", name)
		}
		if block.Type == "CERTIFICATE" {
			return block.Bytes, nil
		}
	}
}

func rootList(m map[string]*gm.Certificate) []*gm.Certificate {
	out := make([]*gm.Certificate, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	return out
}

func sm3(b []byte) []byte {
	d := gm.SM3(b)
	return d[:]
}

// chainOf returns the chain id: the flag, else the node's.
func (f *ceremonyFlags) chainOf(ctx context.Context, c *apiClient) (string, error) {
	if f.chain != "" {
		return f.chain, nil
	}
	id, err := c.chainID(ctx)
	if err != nil {
		return "", fmt.Errorf("asking %s for its chain (or pass --chain): %w", c.base, err)
	}
	return id, nil
}

// run builds the transaction of body, signed by the --key signers first
// (the first is the sender), then extra (a key the transaction installs,
// which must co-sign), then the --signer keys; signs with every local key;
// and either writes a draft (--out) or submits it (to the admin endpoint
// when admin) and waits for its outcome.
func (f *ceremonyFlags) run(cmd *cobra.Command, what string, body txs.Body, recipient *ledger.Address, admin bool, extra ...gm.Signer) error {
	ctx := cmd.Context()
	if len(f.keys) == 0 && len(f.signers) == 0 {
		return errors.New("--key is required: the key(s) that sign here")
	}
	if len(f.signers) > 0 && f.out == "" {
		return errors.New("--signer names keys that sign elsewhere: write a draft for them with --out")
	}
	local, closeKeys, err := openSigners(ctx, f.keys, f.tpm)
	if err != nil {
		return err
	}
	defer closeKeys()
	local = append(local, extra...)
	var keys []ledger.PublicKeyBytes
	for _, s := range local {
		keys = append(keys, ledger.KeyBytes(s.PublicKey()))
	}
	for _, s := range f.signers {
		pk, err := publicKeyOf(s)
		if err != nil {
			return fmt.Errorf("--signer %s: %w", s, err)
		}
		keys = append(keys, pk)
	}
	c := newAPIClient(f.api)
	chain, err := f.chainOf(ctx, c)
	if err != nil {
		return err
	}
	o := provisioning.TxOptions{ChainID: chain, Memo: f.memo}
	if f.sender != "" {
		if err := o.Sender.UnmarshalText([]byte(f.sender)); err != nil {
			return fmt.Errorf("--sender: %w", err)
		}
	}
	tb, err := provisioning.NewTxBody(o, body, recipient, keys...)
	if err != nil {
		return err
	}
	d, err := provisioning.NewDraft(tb, what)
	if err != nil {
		return err
	}
	for _, s := range local {
		if err := d.Sign(ctx, s); err != nil {
			return err
		}
	}
	w := cmd.OutOrStdout()
	if f.out != "" {
		if err := writeDraft(f.out, d); err != nil {
			return err
		}
		fmt.Fprintf(w, "draft %s: %s, transaction %s; %d signature(s) missing (hallmarkctl tx sign %s --key …, then tx submit); sign and submit within the chain's transaction window (5 minutes by default)\n",
			f.out, what, d.ID(), len(d.Missing()), f.out)
		return nil
	}
	tx, err := d.Transaction(time.Now(), 0)
	if err != nil {
		return err
	}
	var reqSigner gm.Signer
	if admin {
		reqSigner = local[0]
	}
	return submitAndReport(cmd, c, tx, reqSigner, f.wait)
}

func writeDraft(path string, d *provisioning.Draft) error {
	b, err := d.Encode()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

func readDraft(path string) (*provisioning.Draft, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return provisioning.DecodeDraft(b)
}

// submitAndReport submits tx (to the admin endpoint when reqSigner is set,
// the request signed with it) and, unless wait is 0, waits for its
// outcome: committed and applied; stored as a governance proposal waiting
// for approvals; or refused with the chain's reason.
func submitAndReport(cmd *cobra.Command, c *apiClient, tx *ledger.Transaction, reqSigner gm.Signer, wait time.Duration) error {
	ctx := cmd.Context()
	body, err := json.Marshal(tx)
	if err != nil {
		return err
	}
	path := "/v1/transactions"
	if reqSigner != nil {
		path = "/v1/admin/transactions"
	}
	resp, _, err := c.do(ctx, "POST", path, body, "application/json", reqSigner, tx.Body.ChainID)
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
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "transaction %s (%s) %s by %s\n", ans.ID, tx.Body.Type, ans.Status, c.base)
	if wait <= 0 {
		return nil
	}
	h, code, reasonName, err := waitOutcome(ctx, c, ans.ID, wait)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("committed at height %d but refused: %s (code %d)", h, reasonName, code)
	}
	// A governance action with fewer approvals than the threshold is
	// stored as a proposal under the transaction's id.
	var prop struct {
		Proposal struct {
			Approvals []string `json:"approvals"`
		} `json:"proposal"`
		Threshold int `json:"threshold"`
	}
	if tx.Body.Type>>8 == 0x06 && tx.Body.Type != ledger.TxGovApprove {
		if err := c.getJSON(ctx, "/v1/proposals/"+ans.ID, &prop); err == nil {
			fmt.Fprintf(w, "committed at height %d: stored as proposal %s with %d of %d approvals; other administrators approve with\n  hallmarkctl gov approve %s --key …\n",
				h, ans.ID, len(prop.Proposal.Approvals), prop.Threshold, ans.ID)
			return nil
		}
	}
	fmt.Fprintf(w, "committed at height %d: ok\n", h)
	return nil
}

// waitOutcome polls until the transaction commits and returns its height
// and result code.
func waitOutcome(ctx context.Context, c *apiClient, id string, wait time.Duration) (uint64, uint16, string, error) {
	deadline := time.Now().Add(wait)
	for {
		var st struct {
			Status string `json:"status"`
			Height uint64 `json:"blockHeight"`
			Result *struct {
				Code   uint16 `json:"code"`
				Reason string `json:"reason"`
			} `json:"result"`
		}
		if err := c.getJSON(ctx, "/v1/transactions/"+id, &st); err == nil && st.Status == "committed" {
			if st.Result == nil {
				return st.Height, 0, "ok", nil
			}
			return st.Height, st.Result.Code, st.Result.Reason, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, "", fmt.Errorf("not committed within %v (query it later: hallmarkctl query tx %s)", wait, id)
		}
		select {
		case <-ctx.Done():
			return 0, 0, "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
