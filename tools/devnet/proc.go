package devnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process in its own process group, so that stopping it
// stops everything it started, and so that a Ctrl-C in the terminal
// reaches only the orchestrator, which stops the children in order.
type proc struct {
	name    string
	cmd     *exec.Cmd
	pidFile string
	done    chan error
}

// startProc starts cmd in a new process group, its output appended to
// logPath, and records its pid in pidFile.
func startProc(name string, cmd *exec.Cmd, logPath, pidFile string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: if the orchestrator dies without stopping its children
	// (SIGKILL), the kernel stops them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, pidFile: pidFile, done: make(chan error, 1)}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		p.kill()
		return nil, err
	}
	go func() {
		p.done <- cmd.Wait()
		logf.Close()
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group and waits up to grace, then
// kills the group.
func (p *proc) stop(grace time.Duration) error {
	defer os.Remove(p.pidFile)
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // anything it left in its group
		return nil
	case <-time.After(grace):
	}
	p.kill()
	return fmt.Errorf("%s did not stop within %v; killed", p.name, grace)
}

func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(5 * time.Second):
	}
}

// reapStale stops a process a previous run left behind, as recorded in
// pidFile, if it is still alive and is what the file says (its command
// line mentions want and dir).
func reapStale(pidFile, want, dir string) (bool, error) {
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer os.Remove(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false, nil
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false, nil // gone
	}
	line := strings.ReplaceAll(string(cmdline), "\x00", " ")
	if !strings.Contains(line, want) || !strings.Contains(line, dir) {
		return false, nil // the pid was reused by something else
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return true, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return true, nil
}
