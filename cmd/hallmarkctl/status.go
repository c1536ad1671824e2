package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hallmark/tools/devnet"
)

// nodeStatus is the part of GET /v1/status that status prints.
type nodeStatus struct {
	ChainID         string `json:"chainId"`
	PeerID          string `json:"peerId"`
	Custody         string `json:"custody"`
	Role            string `json:"role"`
	Epoch           uint64 `json:"epoch"`
	Round           uint64 `json:"round"`
	CommittedHeight uint64 `json:"committedHeight"`
	CommittedBlock  string `json:"committedBlockId"`
	FastPath        string `json:"fastPath"`
	Peers           []struct {
		Connected bool `json:"connected"`
	} `json:"peers"`
	Mempool struct {
		Transactions int `json:"transactions"`
	} `json:"mempool"`
	Bandwidth struct {
		InBytes  uint64 `json:"inBytes"`
		OutBytes uint64 `json:"outBytes"`
	} `json:"bandwidth"`
}

type statusResult struct {
	API string      `json:"api"`
	OK  bool        `json:"reachable"`
	Err string      `json:"error,omitempty"`
	St  *nodeStatus `json:"status,omitempty"`
	// BlockAt is the node's block id at the cluster's lowest height.
	BlockAt string `json:"blockAtCommonHeight,omitempty"`
}

func newStatusCmd() *cobra.Command {
	var apis []string
	var devDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's height and health from the nodes' APIs",
		Long: `Asks each node's HTTP API for its status and prints role, epoch, round,
committed height and block, peers, mempool depth and fast path, then the
cluster's health: every node reachable, heights close, and the same block at
the lowest common height. Nodes come from --api (comma-separated URLs), or
from a devnet's state (--devnet, default ./run when it exists), or
$` + envAPI + `. Exits non-zero when the cluster is not healthy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			urls, err := statusTargets(apis, devDir)
			if err != nil {
				return err
			}
			return runStatus(cmd.Context(), cmd.OutOrStdout(), urls, asJSON)
		},
	}
	cmd.Flags().StringSliceVar(&apis, "api", nil, "node API URLs, comma-separated")
	cmd.Flags().StringVar(&devDir, "devnet", "", "read node addresses from a devnet directory (default ./run if present)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func statusTargets(apis []string, devDir string) ([]string, error) {
	if len(apis) > 0 {
		return apis, nil
	}
	if devDir == "" {
		if _, err := os.Stat("run/devnet.json"); err == nil {
			devDir = "run"
		}
	}
	if devDir != "" {
		st, err := devnet.LoadState(devDir)
		if err != nil {
			return nil, fmt.Errorf("reading the devnet state: %w", err)
		}
		var out []string
		for _, n := range st.Nodes {
			out = append(out, "http://"+n.API)
		}
		return out, nil
	}
	return []string{envOr(envAPI, defaultAPI)}, nil
}

func runStatus(ctx context.Context, w io.Writer, urls []string, asJSON bool) error {
	res := make([]statusResult, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			c := newAPIClient(u)
			res[i].API = c.base
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			var st nodeStatus
			if err := c.getJSON(cctx, "/v1/status", &st); err != nil {
				res[i].Err = err.Error()
				return
			}
			res[i].OK, res[i].St = true, &st
		})
	}
	wg.Wait()
	// The lowest committed height among reachable nodes, and each node's
	// block there.
	var minH uint64
	reach := 0
	for _, r := range res {
		if r.OK {
			if reach == 0 || r.St.CommittedHeight < minH {
				minH = r.St.CommittedHeight
			}
			reach++
		}
	}
	for i := range res {
		if !res[i].OK {
			continue
		}
		var b struct {
			ID string `json:"blockIdentity"`
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := newAPIClient(res[i].API).getJSON(cctx, fmt.Sprintf("/v1/blocks/%d", minH), &b); err == nil {
			res[i].BlockAt = b.ID
		}
		cancel()
	}
	health := judge(res, minH)
	if asJSON {
		b, err := json.MarshalIndent(map[string]any{"nodes": res, "commonHeight": minH, "healthy": health == nil, "problem": errString(health)}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(w, string(b))
		return health
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "API\tROLE\tEPOCH\tROUND\tHEIGHT\tBLOCK\tPEERS\tMEMPOOL\tFAST PATH\tKEY")
	for _, r := range res {
		if !r.OK {
			fmt.Fprintf(tw, "%s\tunreachable: %s\n", r.API, r.Err)
			continue
		}
		s := r.St
		conn := 0
		for _, p := range s.Peers {
			if p.Connected {
				conn++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d/%d\t%d\t%s\t%s\n", r.API, s.Role, s.Epoch, s.Round, s.CommittedHeight,
			short(s.CommittedBlock), conn, len(s.Peers), s.Mempool.Transactions, s.FastPath, s.Custody)
	}
	tw.Flush()
	if health != nil {
		fmt.Fprintf(w, "\ncluster: NOT healthy: %v\n", health)
		return health
	}
	fmt.Fprintf(w, "\ncluster: healthy: %d/%d nodes reachable, all hold block %s at height %d\n", reach, len(res), short(res[firstOK(res)].BlockAt), minH)
	return nil
}

func judge(res []statusResult, minH uint64) error {
	var problems []string
	var chain, block string
	var maxH uint64
	for _, r := range res {
		if !r.OK {
			problems = append(problems, r.API+" unreachable")
			continue
		}
		if chain == "" {
			chain = r.St.ChainID
		} else if r.St.ChainID != chain {
			problems = append(problems, fmt.Sprintf("%s serves chain %s, not %s", r.API, r.St.ChainID, chain))
		}
		if block == "" {
			block = r.BlockAt
		} else if r.BlockAt != block {
			problems = append(problems, fmt.Sprintf("%s holds block %s at height %d, others %s", r.API, short(r.BlockAt), minH, short(block)))
		}
		maxH = max(maxH, r.St.CommittedHeight)
	}
	if len(problems) == 0 && maxH-minH > 20 {
		problems = append(problems, fmt.Sprintf("heights range from %d to %d: a node is behind", minH, maxH))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func firstOK(res []statusResult) int {
	for i, r := range res {
		if r.OK {
			return i
		}
	}
	return 0
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
