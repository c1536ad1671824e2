//go:build cluster

package clustertest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadRate is the fault tests' kiosk load, transactions per second.
const loadRate = 100

// A validator killed with SIGKILL under load restarts from its store and
// catches up; no block it had committed is lost or different.
func TestKillValidatorUnderLoad(t *testing.T) {
	c := newTestCluster(t)
	ctx := t.Context()
	load := c.StartLoad(ctx, loadRate)
	if err := c.WaitHeight(ctx, 5, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the victim has committed blocks carrying transactions

	const victim = 2
	live := []int{0, 1, 3}
	before, err := c.Height(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	chainBefore, err := c.ChainOf(ctx, victim, 0, before)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The other three go on without it.
	if err := c.WaitHeight(ctx, maxHeight(t, c, live...)+10, 60*time.Second, live...); err != nil {
		t.Fatal(err)
	}
	t.Logf("the three live nodes committed 10 blocks in %v after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(2 * time.Second)

	if err := c.StartNode(victim); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := c.WaitReady(ctx, victim, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// Its store still holds what it committed before the kill.
	for h, id := range chainBefore {
		b, err := c.Block(ctx, victim, h)
		if err != nil {
			t.Fatalf("after restart, block %d: %v", h, err)
		}
		if b.ID != id {
			t.Fatalf("after restart, block %d is %s; before the kill it was %s", h, b.ID, id)
		}
	}
	target := maxHeight(t, c, live...) + 3
	if err := c.WaitHeight(ctx, target, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("the restarted node was back at the head (height %d, %d blocks after its kill point %d) in %v",
		target, target-before, before, time.Since(restarted).Round(time.Millisecond))
	ag := finish(t, c, load, victim)
	for h, id := range chainBefore {
		b, err := c.Block(ctx, 0, h)
		if err != nil {
			t.Fatal(err)
		}
		if b.ID != id {
			t.Fatalf("height %d: node0 has %s, the victim had %s before its kill", h, b.ID, id)
		}
	}
	if ag.Height < target {
		t.Fatalf("agreed only up to %d, want %d", ag.Height, target)
	}
}

// A node cut off from the others by nftables falls behind while the other
// three go on, and catches up once the partition heals.
func TestPartitionOneNode(t *testing.T) {
	c := newTestCluster(t)
	ctx := t.Context()
	load := c.StartLoad(ctx, loadRate)
	if err := c.WaitHeight(ctx, 5, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	const victim = 1
	majority := []int{0, 2, 3}
	if err := c.Partition(majority, []int{victim}); err != nil {
		t.Fatal(err)
	}
	parted := time.Now()
	isolatedAt, err := c.Height(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHeight(ctx, maxHeight(t, c, majority...)+15, 60*time.Second, majority...); err != nil {
		t.Fatal(err)
	}
	if wait := 10*time.Second - time.Since(parted); wait > 0 {
		time.Sleep(wait)
	}
	// The isolated node could at most finish what was in flight.
	stuck, err := c.Height(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	head := maxHeight(t, c, majority...)
	if stuck > isolatedAt+2 {
		t.Fatalf("the isolated node went from %d to %d while cut off", isolatedAt, stuck)
	}
	t.Logf("after %v of isolation: the majority is at %d, the isolated node at %d (cut off at %d)",
		time.Since(parted).Round(time.Millisecond), head, stuck, isolatedAt)
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	if err := c.WaitHeight(ctx, head+2, 90*time.Second, victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("the isolated node caught up %d blocks in %v after the heal", head+2-stuck, time.Since(healed).Round(time.Millisecond))
	finish(t, c, load)
}

// With two of four nodes on each side no side has a quorum: nothing
// commits beyond what was in flight at the cut, on either side. After the
// heal the chain moves again.
func TestPartitionTwoTwo(t *testing.T) {
	c := newTestCluster(t)
	ctx := t.Context()
	load := c.StartLoad(ctx, loadRate)
	if err := c.WaitHeight(ctx, 5, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	all := []int{0, 1, 2, 3}
	if err := c.Partition([]int{0, 1}, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	parted := time.Now()
	cut := maxHeight(t, c, all...)
	// Let what was in flight land, then watch.
	time.Sleep(2 * time.Second)
	settled := c.Heights(ctx)
	for i, h := range settled {
		if h < 0 {
			t.Fatalf("%s does not answer", c.Nodes[i].Name)
		}
		if uint64(h) > cut+2 {
			t.Fatalf("%s reached %d; the highest height at the cut was %d", c.Nodes[i].Name, h, cut)
		}
	}
	statuses := make([]*Status, len(c.Nodes))
	for i := range c.Nodes {
		var err error
		if statuses[i], err = c.Status(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(8 * time.Second)
	var rounds []string
	for i := range c.Nodes {
		h, err := c.Height(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Status(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if int64(h) != settled[i] || st.CommittedHeight != statuses[i].CommittedHeight {
			t.Fatalf("%s committed while partitioned 2/2: stored %d -> %d, consensus %d -> %d",
				c.Nodes[i].Name, settled[i], h, statuses[i].CommittedHeight, st.CommittedHeight)
		}
		rounds = append(rounds, fmt.Sprintf("%d->%d", statuses[i].Round, st.Round))
	}
	// Without a quorum of timeouts no timeout certificate forms either, so
	// the rounds stay where they were.
	t.Logf("partitioned 2/2 for %v: heights stayed at %v (cut at %d); rounds %v", time.Since(parted).Round(time.Millisecond), settled, cut, rounds)
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	var top uint64
	for _, h := range settled {
		top = max(top, uint64(h))
	}
	if err := c.WaitHeight(ctx, top+5, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("after the heal every node committed 5 more blocks within %v", time.Since(healed).Round(time.Millisecond))
	finish(t, c, load)
}

// A validator turns Byzantine: a process holding its TPM key connects to
// the others as that validator and sends garbage, protocol-breaking
// consensus messages and malformed requests, while an identity nobody
// admitted tries to connect and junk datagrams hit the peer and kiosk
// ports. The three honest validators keep committing; afterwards the
// validator runs honestly again, catches up, and all four agree.
func TestByzantineValidator(t *testing.T) {
	c := newTestCluster(t)
	ctx := t.Context()
	load := c.StartLoad(ctx, loadRate)
	if err := c.WaitHeight(ctx, 5, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	const byzIdx = 3
	honest := []int{0, 1, 2}
	if err := c.StopNode(byzIdx); err != nil {
		t.Fatal(err)
	}
	// A baseline: the three honest validators' progress with the fourth
	// simply down.
	const baseline = 10 * time.Second
	downHeight := maxHeight(t, c, honest...)
	time.Sleep(baseline)
	downRate := float64(maxHeight(t, c, honest...)-downHeight) / baseline.Seconds()
	bn := c.Nodes[byzIdx]
	cfg := ByzantineConfig{ChainID: ChainID, KeyRef: bn.KeyRef, TPM: bn.TPM, Index: byzIdx, Listen: bn.Peer, Duration: 20 * time.Second}
	for _, i := range honest {
		cfg.Peers = append(cfg.Peers, ByzantinePeer{Key: c.Nodes[i].NodeKeyHex(), Addr: c.Nodes[i].Peer})
		cfg.Kiosks = append(cfg.Kiosks, c.Nodes[i].Kiosk)
	}
	cfgPath := filepath.Join(bn.Dir, "byzantine.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dropped := func(i int, reason string) float64 {
		v, err := c.Metric(ctx, i, "hallmark_consensus_events_total", `event="dropped_`+reason+`"`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	reasons := []string{"malformed", "bad_signature", "invalid", "future_round"}
	before := map[string]float64{}
	for _, r := range reasons {
		for _, i := range honest {
			before[r] += dropped(i, r)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := c.Command(byzIdx, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), byzantineEnv+"="+cfgPath)
	stopByz, err := c.StartProcess("byzantine", cmd, filepath.Join(bn.Dir, "byzantine.log"))
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	startHeight := maxHeight(t, c, honest...)
	time.Sleep(cfg.Duration + 2*time.Second)
	if err := stopByz(10 * time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(bn.Dir, "byzantine.log"))
		t.Fatalf("byzantine process: %v\n%s", err, log)
	}
	endHeight := maxHeight(t, c, honest...)
	elapsed := time.Since(started)
	var st ByzantineStats
	out, err := os.ReadFile(cfgPath + ".out")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range st.Sent {
		total += n
	}
	refused := 0
	for _, i := range honest {
		refused += strings.Count(c.LogTail(i, 1<<30), "is not admitted")
	}
	t.Logf("byzantine for %v: %d garbage messages %v, %d malformed requests (%d refused), learned from %d honest messages, connected to %d peers; an unadmitted identity had %d of %d requests answered, %d handshakes refused",
		elapsed.Round(time.Millisecond), total, st.Sent, st.Requests, st.RequestErrs, st.Learned, st.Connected, st.UnadmittedAnswered, st.UnadmittedTried, refused)
	if st.Connected < len(honest) || total < 100 || st.Learned == 0 {
		t.Fatalf("the byzantine node did not get its garbage through: %+v", st)
	}
	if st.UnadmittedAnswered != 0 {
		t.Fatalf("honest nodes answered %d requests of an unadmitted identity", st.UnadmittedAnswered)
	}
	if refused == 0 {
		t.Fatal("no honest node logged refusing the unadmitted identity's handshake")
	}
	for _, r := range reasons {
		after := 0.0
		for _, i := range honest {
			after += dropped(i, r)
		}
		t.Logf("honest nodes dropped %v more messages as %s", after-before[r], r)
		if r == "malformed" && after <= before[r] {
			t.Fatalf("the honest nodes counted no malformed message (%v before, %v after)", before[r], after)
		}
	}
	if ex := c.Exited(); len(ex) > 0 {
		t.Fatalf("honest nodes exited under attack: %v", ex)
	}
	if endHeight < startHeight+10 {
		t.Fatalf("the honest nodes went only from %d to %d during the attack", startHeight, endHeight)
	}
	attackRate := float64(endHeight-startHeight) / elapsed.Seconds()
	t.Logf("the honest nodes committed %d blocks during the attack: %.2f blocks/s, against %.2f blocks/s with the fourth validator simply down",
		endHeight-startHeight, attackRate, downRate)

	// The validator runs honestly again and catches up.
	if err := c.StartNode(byzIdx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, byzIdx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHeight(ctx, maxHeight(t, c, honest...)+3, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	finish(t, c, load, byzIdx)
}
