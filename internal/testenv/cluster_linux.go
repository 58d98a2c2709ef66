package testenv

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill a node when the test process dies
// without its cleanups (a panic, a timeout).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
