//go:build unix

package host

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup starts the program in a process group of its own, so that
// stopping it also stops every process its jobs started.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
}

func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}
