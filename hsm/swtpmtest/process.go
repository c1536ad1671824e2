package swtpmtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one swtpm process.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	out    *lockedBuffer
}

// spawn starts bin with args in its own process group, so that a signal
// meant for the test binary's group does not reach it and stop can
// signal it alone; it dies with the test binary.
func spawn(bin string, args []string) (*process, error) {
	cmd := exec.Command(bin, args...)
	out := &lockedBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), out: out}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// output is what the process wrote to stdout and stderr.
func (p *process) output() string { return string(bytes.TrimSpace(p.out.Bytes())) }

// signal sends sig to the process. It refuses pids that kill(2) reads
// as "a process group" or "every process" (≤ 0) and init (1): a swtpm
// never has them, so such a pid means a bug, and signalling it could
// take down the machine.
func (p *process) signal(sig syscall.Signal) error {
	pid := p.cmd.Process.Pid
	if pid <= 1 {
		return fmt.Errorf("refusing to signal pid %d", pid)
	}
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("signal swtpm (pid %d): %w", pid, err)
	}
	return nil
}

// stop ends the process (SIGTERM, then SIGKILL after a grace period)
// and waits for it. A process that has exited already is fine.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("swtpm (pid %d) did not exit after SIGKILL", p.cmd.Process.Pid)
	}
}

// lockedBuffer is a bytes.Buffer that the process's output goroutines and
// a test may use at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
