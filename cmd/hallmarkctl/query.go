package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/spf13/cobra"
)

func newQueryCmd() *cobra.Command {
	var api string
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Read chain data from a node's HTTP API",
		Long: `Reads from --api and prints the node's JSON: transactions with their
inclusion proofs and results, blocks, records, accounts, certificates,
grants, the chain height. Audited reads of record content need a signed
request (query content --key).`,
	}
	cmd.PersistentFlags().StringVar(&api, "api", envOr(envAPI, defaultAPI), "node API URL [$"+envAPI+"]")
	get := func(use, short string, args cobra.PositionalArgs, path func([]string) (string, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: args,
			RunE: func(cmd *cobra.Command, a []string) error {
				p, err := path(a)
				if err != nil {
					return err
				}
				b, _, err := newAPIClient(api).do(cmd.Context(), "GET", p, nil, "", nil, "")
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), b)
			},
		}
	}
	one := func(prefix string) func([]string) (string, error) {
		return func(a []string) (string, error) { return prefix + url.PathEscape(a[0]), nil }
	}
	cmd.AddCommand(
		get("height", "The committed height and tip block", cobra.NoArgs, func([]string) (string, error) { return "/v1/height", nil }),
		get("tx ID", "A transaction: status, result, block, inclusion proof", cobra.ExactArgs(1), one("/v1/transactions/")),
		get("block HEIGHT|ID", "A block by height or id", cobra.ExactArgs(1), func(a []string) (string, error) {
			if _, err := strconv.ParseUint(a[0], 10, 64); err == nil {
				return "/v1/blocks/" + a[0], nil
			}
			return "/v1/blocks/id/" + url.PathEscape(a[0]), nil
		}),
		get("record ID", "A record's metadata (its id is the storing transaction's)", cobra.ExactArgs(1), one("/v1/records/")),
		get("records SUBJECT", "The ids of the records about an address", cobra.ExactArgs(1), func(a []string) (string, error) {
			return "/v1/records?subject=" + url.QueryEscape(a[0]), nil
		}),
		get("account ADDRESS", "An account", cobra.ExactArgs(1), one("/v1/accounts/")),
		get("cert DIGEST", "Verify a certificate by its document's SM3 digest", cobra.ExactArgs(1), one("/v1/certificates/")),
		get("grants (--subject|--grantee) ADDRESS", "Grants a subject gave or a grantee holds", cobra.ExactArgs(2), func(a []string) (string, error) {
			switch a[0] {
			case "--subject", "subject":
				return "/v1/grants?subject=" + url.QueryEscape(a[1]), nil
			case "--grantee", "grantee":
				return "/v1/grants?grantee=" + url.QueryEscape(a[1]), nil
			}
			return "", errors.New("say subject or grantee")
		}),
		newQueryContentCmd(&api),
	)
	return cmd
}

func newQueryContentCmd(api *string) *cobra.Command {
	var key, tpmAddr, purpose, out string
	cmd := &cobra.Command{
		Use:   "content RECORD-ID",
		Short: "Read a record's content under audit (signed request)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			if key == "" {
				return errors.New("--key is required: the read is made, and audited, as that account")
			}
			signer, closeKey, err := loadSigner(ctx, key, tpmAddr)
			if err != nil {
				return err
			}
			defer closeKey()
			c := newAPIClient(*api)
			chain, err := c.chainID(ctx)
			if err != nil {
				return err
			}
			path := "/v1/records/" + url.PathEscape(a[0]) + "/content?purpose=" + url.QueryEscape(purpose)
			b, _, err := c.do(ctx, "GET", path, nil, "", signer, chain)
			if err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, b, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d bytes written to %s\n", len(b), out)
				return nil
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the reader's key: PEM file or hsm reference")
	cmd.Flags().StringVar(&tpmAddr, "tpm", envOr(envTPM, "/dev/tpmrm0"), "TPM for tpm keys")
	cmd.Flags().StringVar(&purpose, "purpose", "", "why you read it (kept in the audit log)")
	cmd.Flags().StringVar(&out, "out", "", "write the content to this file")
	return cmd
}
