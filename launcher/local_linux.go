package launcher

import "syscall"

// setParentDeathSignal asks Linux to send the worker SIGTERM when the
// thread that started it dies. Go only ends an OS thread whose goroutine
// locked it and returned, which the launcher never does, so in practice
// this is the launching process's death.
func setParentDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGTERM }
