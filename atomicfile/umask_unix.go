//go:build unix

package atomicfile

import "syscall"

// umask reads the process umask (setting it back at once).
func umask() uint32 {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return uint32(m)
}
