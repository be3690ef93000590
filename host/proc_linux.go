package host

import "syscall"

// setParentDeathSignal makes the kernel kill the program when the worker
// dies, so that no pipeline program outlives its worker.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
