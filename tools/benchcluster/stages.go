package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"hallmark/firmware/clustertest"
)

// stageFamilies are the node histograms whose per-label means the
// benchmark reports over each measurement: where a block's time goes.
var stageFamilies = []string{"hallmark_block_phase_seconds", "hallmark_block_stage_seconds", "hallmark_tx_inclusion_seconds"}

// stageTimes are a node's cumulative histogram sums and counts, by family
// and label ("hallmark_block_stage_seconds{stage=\"voted\"}").
type stageTimes map[string][2]float64

// readStages fetches node i's metrics and keeps the sums and counts of
// stageFamilies. A node that does not answer gives an empty set.
func readStages(ctx context.Context, c *clustertest.Cluster, i int) stageTimes {
	out := stageTimes{}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.Nodes[i].API+"/metrics", nil)
	if err != nil {
		return out
	}
	resp, err := c.HTTP().Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, fam := range stageFamilies {
			rest, ok := strings.CutPrefix(line, fam)
			if !ok {
				continue
			}
			var part int
			switch {
			case strings.HasPrefix(rest, "_sum"):
				rest, part = rest[len("_sum"):], 0
			case strings.HasPrefix(rest, "_count"):
				rest, part = rest[len("_count"):], 1
			default:
				continue
			}
			labels, value, ok := strings.Cut(rest, " ")
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				continue
			}
			key := fam + labels
			e := out[key]
			e[part] = v
			out[key] = e
		}
	}
	return out
}

// since renders, one per line, the mean of each histogram since prev in
// milliseconds, with the number of observations.
func (s stageTimes) since(prev stageTimes) []string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		ds, dn := s[k][0]-prev[k][0], s[k][1]-prev[k][1]
		if dn <= 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%-70s mean %8.2f ms  (%.0f)", k, 1000*ds/dn, dn))
	}
	return out
}
