//go:build unix && !linux

package host

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
