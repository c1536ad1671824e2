package xdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"hallmark/ledger"
	"hallmark/netstack/kiosk"
)

// AttachMode says how the program was attached.
type AttachMode string

// Attach modes.
const (
	ModeNative  AttachMode = "native"  // in the driver, before any allocation
	ModeGeneric AttachMode = "generic" // after the kernel built an skb
)

// Program is the BPF filter loaded into the kernel. It implements
// [Filter]; [Program.Attach] puts it on an interface.
type Program struct {
	objs  filterObjects
	link  link.Link
	mode  AttachMode
	iface string

	mu  sync.Mutex // guards cfg, which Configure and SetClock both write
	cfg filterConfig
}

var _ Filter = (*Program)(nil)

// LoadProgram loads the filter into the kernel with the given
// configuration. It needs CAP_BPF (or root) and fails with a wrapped
// permission error otherwise.
func LoadProgram(cfg Config) (*Program, error) {
	p := &Program{}
	if err := loadFilterObjects(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("xdp: loading BPF objects: %w", err)
	}
	p.cfg.ClockOffsetNs = ClockOffset() // p is not shared yet
	if err := p.Configure(cfg); err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

// Attach attaches the program to the named interface, natively if the
// driver supports it and generically otherwise, and returns the mode.
func (p *Program) Attach(ifname string) (AttachMode, error) {
	if p.link != nil {
		return "", fmt.Errorf("xdp: already attached to %s", p.iface)
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return "", fmt.Errorf("xdp: interface %q: %w", ifname, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p.objs.HallmarkFilter, Interface: ifc.Index, Flags: link.XDPDriverMode})
	mode := ModeNative
	if err != nil {
		var gerr error
		l, gerr = link.AttachXDP(link.XDPOptions{Program: p.objs.HallmarkFilter, Interface: ifc.Index, Flags: link.XDPGenericMode})
		if gerr != nil {
			return "", fmt.Errorf("xdp: attaching to %s: native: %v; generic: %w", ifname, err, gerr)
		}
		mode = ModeGeneric
	}
	p.link, p.mode, p.iface = l, mode, ifname
	return mode, nil
}

// Mode returns how the program is attached ("" if it is not).
func (p *Program) Mode() AttachMode { return p.mode }

// Configure implements [Filter].
func (p *Program) Configure(cfg Config) error {
	pr, err := cfg.params()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg.IngressPort = pr.ingressPort
	p.cfg.PeerPort = pr.peerPort
	p.cfg.MaxAgeMs = pr.maxAgeMs
	p.cfg.MaxFutureMs = pr.maxFutureMs
	p.cfg.RatePerSec = pr.ratePerSec
	p.cfg.BurstUnits = pr.burstUnits
	p.cfg.FillCapNs = pr.fillCapNs
	return p.writeConfig()
}

func (p *Program) writeConfig() error {
	if err := p.objs.ConfigMap.Put(uint32(0), &p.cfg); err != nil {
		return fmt.Errorf("xdp: writing config: %w", err)
	}
	return nil
}

// SetSender implements [Filter].
func (p *Program) SetSender(id kiosk.ShortKeyID, s SenderState) error {
	if err := p.objs.Senders.Put(id, uint8(s)); err != nil {
		return fmt.Errorf("xdp: setting sender %s: %w", id, err)
	}
	return nil
}

// DeleteSender implements [Filter].
func (p *Program) DeleteSender(id kiosk.ShortKeyID) error {
	if err := p.objs.Senders.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("xdp: deleting sender %s: %w", id, err)
	}
	return nil
}

// AddAccepted implements [Filter].
func (p *Program) AddAccepted(id ledger.TxID) error {
	if err := p.objs.Accepted.Put(id, uint8(1)); err != nil {
		return fmt.Errorf("xdp: adding accepted id %s: %w", id, err)
	}
	return nil
}

// SetPeer implements [Filter].
func (p *Program) SetPeer(addr netip.Addr, admitted bool) error {
	key := addr.As16()
	if !admitted {
		if err := p.objs.Peers.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: removing peer %s: %w", addr, err)
		}
		return nil
	}
	if err := p.objs.Peers.Put(key, uint8(1)); err != nil {
		return fmt.Errorf("xdp: adding peer %s: %w", addr, err)
	}
	return nil
}

// SetClock implements [Filter].
func (p *Program) SetClock(offsetNs int64, overrideNs uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg.ClockOffsetNs = offsetNs
	p.cfg.ClockOverrideNs = overrideNs
	return p.writeConfig()
}

// Counters implements [Filter]: the per-CPU counts summed.
func (p *Program) Counters() (Counters, error) {
	var c Counters
	var per []uint64
	for v := range uint32(NumVerdicts) {
		if err := p.objs.Counters.Lookup(v, &per); err != nil {
			return c, fmt.Errorf("xdp: reading counter %s: %w", Verdict(v), err)
		}
		for _, n := range per {
			c[v] += n
		}
	}
	return c, nil
}

// XDP actions the program returns.
const (
	xdpDrop = 1
	xdpPass = 2
)

// Run feeds one Ethernet frame to the program with BPF_PROG_TEST_RUN and
// returns its verdict, read from the counters it moved.
func (p *Program) Run(frame []byte) (Verdict, error) {
	before, err := p.Counters()
	if err != nil {
		return 0, err
	}
	ret, err := p.objs.HallmarkFilter.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return 0, fmt.Errorf("xdp: test run: %w", err)
	}
	after, err := p.Counters()
	if err != nil {
		return 0, err
	}
	d := after.Sub(before)
	var v Verdict
	found := 0
	for i, n := range d {
		if n != 0 {
			v, found = Verdict(i), found+int(n)
		}
	}
	if found != 1 {
		return 0, fmt.Errorf("xdp: test run moved %d counters (%v)", found, d)
	}
	if want := map[bool]uint32{true: xdpDrop, false: xdpPass}[v.Drop()]; ret != want {
		return 0, fmt.Errorf("xdp: verdict %s but XDP action %d", v, ret)
	}
	return v, nil
}

// Close detaches the program and frees its maps.
func (p *Program) Close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
		p.link = nil
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}
