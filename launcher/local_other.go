//go:build !linux

package launcher

import "syscall"

// setParentDeathSignal has no portable equivalent outside Linux: workers
// there are stopped by Stop and Close only.
func setParentDeathSignal(*syscall.SysProcAttr) {}
