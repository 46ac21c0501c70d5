package torch

import (
	"runtime"
	"testing"
)

// lockedThread runs functions on the one OS thread of a goroutine locked to it.
type lockedThread chan func()

func newLockedThread(t *testing.T) lockedThread {
	c := make(lockedThread)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		for fn := range c {
			fn()
		}
	}()
	t.Cleanup(func() { close(c) })
	return c
}

// do runs fn on the thread and waits for it.
func (c lockedThread) do(fn func()) {
	done := make(chan struct{})
	c <- func() { fn(); close(done) }
	<-done
}

// TestNumThreadsHoldsOnEveryOSThread checks that SetNumThreads, called on one OS thread, governs
// the operations that run on other OS threads, including threads that ran libtorch work before the
// call (OpenMP keeps the thread count per OS thread; Go runs cgo calls on any of its threads).
func TestNumThreadsHoldsOnEveryOSThread(t *testing.T) {
	prev := NumThreads()
	defer SetNumThreads(prev)
	other := newLockedThread(t)
	other.do(func() { _ = NumThreads() }) // the thread takes libtorch's count before SetNumThreads
	for _, n := range []int{2, 1, 3} {
		SetNumThreads(n)
		var got int
		other.do(func() {
			x := Full(nil, 1, Float32, CPU, 4)
			x.AddScalar(1).Free()
			x.Free()
			got = threadNumThreads()
		})
		if got != n {
			t.Fatalf("after SetNumThreads(%d) another OS thread runs with %d threads", n, got)
		}
	}
}
