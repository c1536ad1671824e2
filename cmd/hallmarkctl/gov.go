package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"hallmark/gm"
	"hallmark/hsm"
	"hallmark/ledger"
	"hallmark/ledger/txs"
	"hallmark/provisioning"
)

func newGovCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gov",
		Short: "Governance by the administrators' M-of-N quorum: approve proposals, remove nodes, put key rotations on chain",
		Long: `A governance action needs approvals from M administrators (the chain's
governance threshold). Every command here signs with each --key given: with
M keys the action takes effect when it commits; with fewer it is stored as a
proposal (for 7 days) that other administrators complete with gov approve.
A key that is not an active administrator's, an approval given twice or a
proposal that does not exist is refused by the chain with its reason.`,
	}
	cmd.AddCommand(newGovApproveCmd(), newGovShowCmd(), newGovRemoveNodeCmd(), newGovRotateNodeKeyCmd())
	return cmd
}

func parseDigestArg(name, s string) (gm.Digest, error) {
	var d gm.Digest
	if err := d.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return d, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

func newGovApproveCmd() *cobra.Command {
	f := &ceremonyFlags{}
	cmd := &cobra.Command{
		Use:     "approve PROPOSAL",
		Short:   "Approve a pending proposal (gov.approve); the approval that reaches the threshold executes it",
		Example: `  hallmarkctl gov approve 4022cb06… --key admin-customs.pem`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseDigestArg("proposal", args[0])
			if err != nil {
				return err
			}
			return f.run(cmd, "approve proposal "+id.String(), &txs.GovApprove{Proposal: id}, nil, true)
		},
	}
	f.register(cmd, "an administrator's key")
	return cmd
}

func newGovShowCmd() *cobra.Command {
	var api string
	cmd := &cobra.Command{
		Use:   "show PROPOSAL",
		Short: "Show a pending proposal and its approvals",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseDigestArg("proposal", args[0])
			if err != nil {
				return err
			}
			b, _, err := newAPIClient(api).do(cmd.Context(), "GET", "/v1/proposals/"+id.String(), nil, "", nil, "")
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), b)
		},
	}
	cmd.Flags().StringVar(&api, "api", envOr(envAPI, defaultAPI), "node API URL [$"+envAPI+"]")
	return cmd
}

func newGovRemoveNodeCmd() *cobra.Command {
	f := &ceremonyFlags{}
	var peer string
	cmd := &cobra.Command{
		Use:   "remove-node",
		Short: "Remove a validator (gov.node-remove); it leaves the validator set and every node's admission at the next epoch",
		Long: `This is also how a node's certificate is revoked: its identity stops being
admitted (QUIC and the fast path) at the epoch boundary after the removal
takes effect. Until then it counts as one of the f faulty validators the
consortium tolerates. Give the reason with --memo.`,
		Example: `  hallmarkctl gov remove-node --peer 51c95bd2… --memo "certificate 7f3a revoked: appliance stolen" --key admin-port.pem --key admin-customs.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := parseDigestArg("--peer", peer)
			if err != nil {
				return err
			}
			return f.run(cmd, "remove node "+id.String(), &txs.NodeRemove{Peer: gm.KeyID(id)}, nil, true)
		},
	}
	f.register(cmd, "an administrator's key")
	cmd.Flags().StringVar(&peer, "peer", "", "the validator's key id (required)")
	_ = cmd.MarkFlagRequired("peer")
	return cmd
}

func newGovRotateNodeKeyCmd() *cobra.Command {
	f := &ceremonyFlags{}
	var stmtPath string
	cmd := &cobra.Command{
		Use:   "rotate-node-key",
		Short: "Put a node key rotation on chain (gov.node-rotate-key) from the statement the node signed with both keys",
		Long: `The statement comes from the security officer's ceremony (hallmarkctl
node-key rotate, or key rotate for a key no node holds). It is checked here
as the chain checks it: both signatures, and that it is for this chain. The
new key takes effect at the next epoch boundary after the action does.`,
		Example: `  hallmarkctl gov rotate-node-key --statement node1-rotation.cbor --key admin-port.pem --key admin-customs.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(stmtPath)
			if err != nil {
				return err
			}
			st, err := hsm.ParseRotation(b)
			if err != nil {
				return err
			}
			if f.chain != "" && st.Statement.ChainID != f.chain {
				return fmt.Errorf("the statement is for chain %q, not %q", st.Statement.ChainID, f.chain)
			}
			if f.chain == "" {
				f.chain = st.Statement.ChainID
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotation of node key %s to %s (reason: %q)\n", st.Statement.Old.ID(), st.Statement.New.ID(), st.Statement.Reason)
			return f.run(cmd, "rotate node key "+st.Statement.Old.ID().String(), st, nil, true)
		},
	}
	f.register(cmd, "an administrator's key")
	cmd.Flags().StringVar(&stmtPath, "statement", "", "the rotation statement, canonical CBOR (required)")
	_ = cmd.MarkFlagRequired("statement")
	return cmd
}

func newRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a kiosk's or a node's certificate on chain",
		Long: `Revocation is expressed on chain by what stops admission:
  revoke kiosk  freezes the account whose certificate it is (account.freeze,
                an administrator or the regulator), with a reason naming the
                certificate's serial. Every node drops the kiosk's datagrams
                from that block on (XDP or its twin: drop_frozen). Unfreezing
                reinstates a certificate revoked in error; a new key needs a
                new certificate and account.rotate-key.
  revoke node   removes the node (gov.node-remove, an administrator quorum):
                its identity leaves every node's admission at the next epoch.`,
	}
	cmd.AddCommand(newRevokeKioskCmd(), newGovRemoveNodeCmd())
	cmd.Commands()[1].Use = "node"
	return cmd
}

func newRevokeKioskCmd() *cobra.Command {
	f := &ceremonyFlags{}
	var certPath, cause string
	cmd := &cobra.Command{
		Use:     "kiosk",
		Short:   "Revoke a kiosk's certificate: freeze its account with a reason naming the certificate",
		Example: `  hallmarkctl revoke kiosk --cert kiosk-hall3.crt --reason "kiosk stolen" --key regulator.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			der, err := readCertificate(certPath)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			c, err := gm.ParseCertificate(der)
			if err != nil {
				return err
			}
			if cause == "" {
				return errors.New("--reason is required")
			}
			addr := ledger.Address(ledger.KeyBytes(c.PublicKey()).ID())
			reason := provisioning.RevocationReason(serialText{c}, cause)
			fmt.Fprintf(cmd.OutOrStdout(), "freezing account %s: %s\n", addr, reason)
			return f.run(cmd, "revoke kiosk certificate", &txs.AccountFreeze{Reason: reason}, &addr, true)
		},
	}
	f.register(cmd, "an administrator's or the regulator's key")
	cmd.Flags().StringVar(&certPath, "cert", "", "the kiosk's certificate (required)")
	cmd.Flags().StringVar(&cause, "reason", "", "why it is revoked (required)")
	_ = cmd.MarkFlagRequired("cert")
	return cmd
}

type serialText struct{ c *gm.Certificate }

func (s serialText) String() string { return s.c.SerialNumber().Text(16) }
