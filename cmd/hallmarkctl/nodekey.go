package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hallmark/gm"
	"hallmark/hsm"
)

// nodeKeyFlags are the officer's connection to a running node.
type nodeKeyFlags struct {
	api string
	key string
	tpm string
}

func newNodeKeyCmd() *cobra.Command {
	f := &nodeKeyFlags{}
	cmd := &cobra.Command{
		Use:   "node-key",
		Short: "Security officer: rotate a running node's validator key through the node (no downtime)",
		Long: `A running node holds its TPM connection, so its key is rotated through the
node itself (docs/OPERATIONS.md §9):

  1. node-key rotate   the node makes the new key in its TPM and returns the
                       rotation statement signed by the old and the new key;
                       it holds both keys from now on.
  2. gov rotate-node-key --statement FILE   administrators put it on chain.
  3. node-key finish   waits until the new key is in force (the epoch after the
                       rotation took effect) and has the node destroy the old
                       key in the TPM.

The node votes with the old key until the epoch boundary and with the new
one after; from then on votes signed with the old key are refused. Requests
are signed with --key, an account with the officer role.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.api, "api", envOr(envAPI, defaultAPI), "the node's API URL [$"+envAPI+"]")
	pf.StringVar(&f.key, "key", "", "the officer's key: PEM file or hsm reference (required)")
	pf.StringVar(&f.tpm, "tpm", envOr(envTPM, "/dev/tpmrm0"), "TPM for a tpm officer key [$"+envTPM+"]")
	cmd.AddCommand(newNodeKeyListCmd(f), newNodeKeyRotateCmd(f), newNodeKeyFinishCmd(f))
	return cmd
}

type nodeKeyJSON struct {
	KeyID       string `json:"keyId"`
	Ref         string `json:"ref"`
	Custody     string `json:"custody"`
	Identity    bool   `json:"identity"`
	InEpoch     bool   `json:"inEpoch"`
	InCommitted bool   `json:"inCommitted"`
}

func (f *nodeKeyFlags) call(cmd *cobra.Command, method, path string, body []byte) ([]byte, int, error) {
	if f.key == "" {
		return nil, 0, errors.New("--key is required: an account with the officer role signs the request")
	}
	s, closeKey, err := loadSigner(cmd.Context(), f.key, f.tpm)
	if err != nil {
		return nil, 0, err
	}
	defer closeKey()
	c := newAPIClient(f.api)
	chain, err := c.chainID(cmd.Context())
	if err != nil {
		return nil, 0, fmt.Errorf("asking %s for its chain: %w", c.base, err)
	}
	return c.do(cmd.Context(), method, path, body, "application/json", s, chain)
}

func (f *nodeKeyFlags) list(cmd *cobra.Command) ([]nodeKeyJSON, error) {
	b, _, err := f.call(cmd, "GET", "/v1/admin/node/keys", nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Keys []nodeKeyJSON `json:"keys"`
	}
	return out.Keys, json.Unmarshal(b, &out)
}

func newNodeKeyListCmd(f *nodeKeyFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "The keys the node holds and what each is for",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := f.list(cmd)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "key id\tref\tcustody\tidentity\tcurrent epoch\tcommitted set")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%v\n", k.KeyID, k.Ref, k.Custody, k.Identity, k.InEpoch, k.InCommitted)
			}
			return tw.Flush()
		},
	}
}

func newNodeKeyRotateCmd(f *nodeKeyFlags) *cobra.Command {
	var newRef, reason, out string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Have the node make its next key and sign the rotation statement with both keys",
		Example: `  hallmarkctl node-key rotate --api http://198.18.0.2:7402 --key officer-port.pem \
      --new-ref tpm:handle=auto --reason "annual rotation" --out node1-rotation.cbor`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := json.Marshal(map[string]string{"ref": newRef, "reason": reason})
			if err != nil {
				return err
			}
			b, _, err := f.call(cmd, "POST", "/v1/admin/node/keys", body)
			if err != nil {
				return err
			}
			var rot struct {
				Old, New  nodeKeyJSON
				Statement string `json:"statement"`
			}
			if err := json.Unmarshal(b, &rot); err != nil {
				return err
			}
			enc, err := hex.DecodeString(rot.Statement)
			if err != nil {
				return err
			}
			st, err := hsm.ParseRotation(enc)
			if err != nil {
				return fmt.Errorf("the node's statement: %w", err)
			}
			if err := writeFileAtomic(out, enc); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the node holds its old key %s and its new key %s (%s)\nstatement %s for chain %s; next, administrators:\n  hallmarkctl gov rotate-node-key --statement %s --key …\nthen: hallmarkctl node-key finish --old %s\n",
				st.Statement.Old.ID(), st.Statement.New.ID(), rot.New.Ref, out, st.Statement.ChainID, out, st.Statement.Old.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&newRef, "new-ref", "tpm:handle=auto", "where the node makes the new key (same custody as the current one)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the statement)")
	cmd.Flags().StringVar(&out, "out", "", "where to write the statement (required)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newNodeKeyFinishCmd(f *nodeKeyFlags) *cobra.Command {
	var old string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "finish",
		Short: "Wait until the new key is in force, then have the node destroy the old key in its TPM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var oldID gm.Digest
			if err := oldID.UnmarshalText([]byte(old)); err != nil {
				return fmt.Errorf("--old: %w", err)
			}
			w := cmd.OutOrStdout()
			deadline := time.Now().Add(wait)
			said := ""
			for {
				keys, err := f.list(cmd)
				if err != nil {
					return err
				}
				var oldKey, newKey *nodeKeyJSON
				for i := range keys {
					if strings.EqualFold(keys[i].KeyID, oldID.String()) {
						oldKey = &keys[i]
					} else if keys[i].InEpoch && keys[i].Identity {
						newKey = &keys[i]
					}
				}
				if oldKey == nil {
					return fmt.Errorf("the node holds no key %s (destroyed already? hallmarkctl node-key list)", oldID)
				}
				state := "waiting for the rotation to commit"
				switch {
				case oldKey.InEpoch:
					if !oldKey.InCommitted {
						state = "the rotation committed; waiting for the epoch boundary"
					}
				case newKey == nil:
					state = "waiting for the node to switch to its new key"
				default:
					b, code, err := f.call(cmd, "POST", "/v1/admin/node/keys/"+oldID.String()+"/destroy", nil)
					if err == nil {
						var res struct {
							Destroyed nodeKeyJSON `json:"destroyed"`
						}
						_ = json.Unmarshal(b, &res)
						fmt.Fprintf(w, "the new key %s is in force; the old key %s (%s) is destroyed and no longer opens\n", newKey.KeyID, oldID, res.Destroyed.Ref)
						return nil
					}
					if code != 409 {
						return err
					}
					state = "in force; the previous epoch's grace is not over: " + err.Error()
				}
				if state != said {
					fmt.Fprintln(w, state)
					said = state
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("gave up after %v: %s", wait, state)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().StringVar(&old, "old", "", "the old key's id (required)")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the new key to be in force")
	_ = cmd.MarkFlagRequired("old")
	return cmd
}
