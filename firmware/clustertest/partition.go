package clustertest

import (
	"errors"
	"fmt"
)

// Partition splits the nodes into groups that cannot reach each other:
// inside each node's namespace, nftables drops traffic to and from the
// addresses of the nodes outside its group. Nodes in no group are cut off
// from everyone. The client namespace still reaches every node, so the
// API and the kiosk port stay usable. A new partition replaces the last.
func (c *Cluster) Partition(groups ...[]int) error {
	if c.topo == nil {
		return errors.New("clustertest: partitions need network-namespace mode")
	}
	group := make(map[int]int)
	for g, members := range groups {
		for _, i := range members {
			if i < 0 || i >= len(c.Nodes) {
				return fmt.Errorf("clustertest: no node %d", i)
			}
			if _, dup := group[i]; dup {
				return fmt.Errorf("clustertest: node %d is in two groups", i)
			}
			group[i] = g
		}
	}
	for i, n := range c.Nodes {
		g, in := group[i]
		var drop []string
		for j, m := range c.Nodes {
			if j == i {
				continue
			}
			if h, ok := group[j]; !in || !ok || h != g {
				drop = append(drop, m.IP)
			}
		}
		if err := isolate(n.Netns, drop); err != nil {
			return err
		}
	}
	c.logf("cluster: partitioned %v", groups)
	return nil
}

// Heal removes every partition rule.
func (c *Cluster) Heal() error {
	if c.topo == nil {
		return errors.New("clustertest: partitions need network-namespace mode")
	}
	var errs []error
	for _, n := range c.Nodes {
		if err := heal(n.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	c.logf("cluster: healed")
	return errors.Join(errs...)
}
