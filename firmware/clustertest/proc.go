package clustertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// spawner starts child processes from one OS thread that lives as long as
// the cluster. Children get a parent-death signal, which the kernel sends
// when the thread that forked them ends, not the process: forking from a
// thread the Go runtime might retire (inNetns retires threads) would kill
// children at random. When the test binary dies, its threads end and the
// children are killed with it.
type spawner struct {
	req  chan spawnReq
	done chan struct{}
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

func newSpawner() *spawner {
	s := &spawner{req: make(chan spawnReq), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		runtime.LockOSThread()
		// Never unlocked: when the spawner closes, its thread ends and
		// anything still running gets its parent-death signal.
		for r := range s.req {
			r.err <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	select {
	case s.req <- r:
	case <-s.done:
		return errors.New("clustertest: spawner closed")
	}
	return <-r.err
}

func (s *spawner) close() {
	close(s.req)
	<-s.done
}

// proc is a child process in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
	log  *os.File
}

// startProc starts cmd (in its own process group, killed if we die) with
// its output appended to logPath.
func startProc(sp *spawner, name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "==== %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := sp.start(cmd); err != nil {
		logf.Close()
		return nil, fmt.Errorf("clustertest: starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id; it is always above 1 for a started process,
// and signal refuses anything else.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// signalGroup signals the process's group. It never signals a pid of 1 or
// less (kill(-1) would reach every process).
func (p *proc) signalGroup(sig syscall.Signal) {
	if pid := p.pid(); pid > 1 {
		_ = syscall.Kill(-pid, sig)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the group and waits for the process to be reaped.
func (p *proc) kill() error {
	p.signalGroup(syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("clustertest: %s (pid %d) not reaped 10s after SIGKILL", p.name, p.pid())
	}
}

// stop sends SIGTERM and waits up to grace, then kills. It reports a
// process that needed killing, or that exited with an error.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	p.signalGroup(syscall.SIGTERM)
	select {
	case <-p.done:
		p.signalGroup(syscall.SIGKILL) // anything it left in its group
		var ee *exec.ExitError
		if p.err != nil && !(errors.As(p.err, &ee) && ee.Exited() && ee.ExitCode() == 0) {
			return fmt.Errorf("clustertest: %s exited with %v after SIGTERM", p.name, p.err)
		}
		return nil
	case <-time.After(grace):
	}
	if err := p.kill(); err != nil {
		return err
	}
	return fmt.Errorf("clustertest: %s did not stop within %v of SIGTERM; killed", p.name, grace)
}

// MemStats is a process's memory as /proc/PID/status reports it, in bytes.
type MemStats struct {
	PeakRSS int64 // VmHWM: the highest resident set so far
	RSS     int64 // VmRSS
	Anon    int64 // RssAnon: heap, stacks
	File    int64 // RssFile: mapped files (the bbolt file) and the binary
}

func readMemStats(pid int) (MemStats, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return MemStats{}, err
	}
	var m MemStats
	fields := map[string]*int64{"VmHWM:": &m.PeakRSS, "VmRSS:": &m.RSS, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			if dst, ok := fields[f[0]]; ok {
				kb, err := strconv.ParseInt(f[1], 10, 64)
				if err != nil {
					return m, fmt.Errorf("/proc/%d/status: %s", pid, line)
				}
				*dst = kb << 10
			}
		}
	}
	if m.PeakRSS == 0 {
		return m, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
	}
	return m, nil
}
