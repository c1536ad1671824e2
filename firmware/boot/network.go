package boot

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rtnl is a minimal rtnetlink client: enough to bring links up and add
// addresses and routes, so the init needs no external tools.
type rtnl struct {
	fd  int
	seq uint32
}

func dialRTNL() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("boot: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("boot: netlink bind: %w", err)
	}
	return &rtnl{fd: fd}, nil
}

func (r *rtnl) close() { unix.Close(r.fd) }

func rtattr(typ uint16, data []byte) []byte {
	n := unix.SizeofRtAttr + len(data)
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(n))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[4:], data)
	return b
}

func u32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// do sends one request and waits for its acknowledgement.
func (r *rtnl) do(typ, flags uint16, body []byte) error {
	r.seq++
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], typ)
	binary.NativeEndian.PutUint16(msg[6:8], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:12], r.seq)
	msg = append(msg, body...)
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("netlink: bad message length %d", l)
			}
			mtype := binary.NativeEndian.Uint16(b[4:6])
			seq := binary.NativeEndian.Uint32(b[8:12])
			if mtype == unix.NLMSG_ERROR && seq == r.seq {
				if l < unix.NLMSG_HDRLEN+4 {
					return fmt.Errorf("netlink: short error message")
				}
				if errno := int32(binary.NativeEndian.Uint32(b[16:20])); errno != 0 {
					return syscall.Errno(-errno)
				}
				return nil
			}
			b = b[(l+3)&^3:]
		}
	}
}

func (r *rtnl) linkUp(index, mtu int) error {
	body := make([]byte, unix.SizeofIfInfomsg)
	body[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(body[4:8], uint32(index))
	binary.NativeEndian.PutUint32(body[8:12], unix.IFF_UP)
	binary.NativeEndian.PutUint32(body[12:16], unix.IFF_UP)
	if mtu > 0 {
		body = append(body, rtattr(unix.IFLA_MTU, u32(uint32(mtu)))...)
	}
	return r.do(unix.RTM_NEWLINK, 0, body)
}

func family(a netip.Addr) byte {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func (r *rtnl) addAddr(index int, p netip.Prefix) error {
	a := p.Addr()
	body := make([]byte, unix.SizeofIfAddrmsg)
	body[0] = family(a)
	body[1] = byte(p.Bits())
	binary.NativeEndian.PutUint32(body[4:8], uint32(index))
	body = append(body, rtattr(unix.IFA_LOCAL, a.AsSlice())...)
	body = append(body, rtattr(unix.IFA_ADDRESS, a.AsSlice())...)
	return r.do(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body)
}

func (r *rtnl) addDefaultRoute(index int, gw netip.Addr) error {
	body := make([]byte, unix.SizeofRtMsg)
	body[0] = family(gw)
	body[4] = unix.RT_TABLE_MAIN
	body[5] = unix.RTPROT_BOOT
	body[6] = unix.RT_SCOPE_UNIVERSE
	body[7] = unix.RTN_UNICAST
	body = append(body, rtattr(unix.RTA_GATEWAY, gw.AsSlice())...)
	body = append(body, rtattr(unix.RTA_OIF, u32(uint32(index)))...)
	return r.do(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body)
}

// configureNetwork brings up the loopback interface and every configured
// interface, waiting up to wait for each to appear (drivers probe
// asynchronously).
func configureNetwork(ctx context.Context, log *slog.Logger, cfg NetworkConfig, wait time.Duration) error {
	r, err := dialRTNL()
	if err != nil {
		return err
	}
	defer r.close()
	if lo, err := net.InterfaceByName("lo"); err == nil {
		if err := r.linkUp(lo.Index, 0); err != nil {
			return fmt.Errorf("boot: bring up lo: %w", err)
		}
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("boot: set hostname: %w", err)
		}
	}
	for _, ifc := range cfg.Interfaces {
		link, err := waitInterface(ctx, ifc.Name, wait)
		if err != nil {
			return err
		}
		if err := r.linkUp(link.Index, ifc.MTU); err != nil {
			return fmt.Errorf("boot: bring up %s: %w", ifc.Name, err)
		}
		for _, a := range ifc.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return fmt.Errorf("boot: %s: %w", ifc.Name, err)
			}
			if err := r.addAddr(link.Index, p); err != nil {
				return fmt.Errorf("boot: add %s to %s: %w", a, ifc.Name, err)
			}
		}
		if ifc.Gateway != "" {
			gw, err := netip.ParseAddr(ifc.Gateway)
			if err != nil {
				return fmt.Errorf("boot: %s gateway: %w", ifc.Name, err)
			}
			if err := r.addDefaultRoute(link.Index, gw); err != nil {
				return fmt.Errorf("boot: default route via %s: %w", gw, err)
			}
		}
		log.Info("network interface up", "name", ifc.Name, "addresses", ifc.Addresses, "gateway", ifc.Gateway)
	}
	return nil
}

func waitInterface(ctx context.Context, name string, wait time.Duration) (*net.Interface, error) {
	deadline := time.Now().Add(wait)
	for {
		link, err := net.InterfaceByName(name)
		if err == nil {
			return link, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("boot: network interface %s did not appear within %v", name, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
