//go:build unix

package atomicfile

import (
	"sync"
	"syscall"
)

// umask reads the process umask once (setting it back at once: reading it is only possible by
// setting it, so doing it once keeps the window in which it is 0 to the first call).
var umask = sync.OnceValue(func() uint32 {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return uint32(m)
})
