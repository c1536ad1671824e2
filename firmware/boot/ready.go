package boot

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// NotifyReady is the node's side of the readiness protocol of [ExecNode]:
// it writes "READY" to the file descriptor named by HALLMARK_READY_FD and
// closes it. Outside the init (the variable unset) it does nothing and
// returns false.
func NotifyReady() (bool, error) {
	v := os.Getenv(ReadyFDEnv)
	if v == "" {
		return false, nil
	}
	fd, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || fd < 3 {
		return false, fmt.Errorf("boot: %s=%q is not a file descriptor above stderr", ReadyFDEnv, v)
	}
	f := os.NewFile(uintptr(fd), "ready")
	if f == nil {
		return false, fmt.Errorf("boot: %s=%d is not open", ReadyFDEnv, fd)
	}
	defer f.Close()
	if _, err := f.WriteString("READY\n"); err != nil {
		return false, fmt.Errorf("boot: reporting readiness on fd %d: %w", fd, err)
	}
	return true, nil
}
