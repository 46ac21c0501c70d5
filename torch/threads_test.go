package torch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
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

// osThreads counts the process's OS threads.
func osThreads(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc/self/task: %v", err)
	}
	return len(es)
}

// TestOnThrowawayThreadEndsItsPool checks that the thread of one-off work ends, and with it the
// OpenMP pool its parallel region started (with 4 libtorch threads, 3 workers): left running, each
// such pool counts against the cores and libgomp throttles every pool's spin-wait.
func TestOnThrowawayThreadEndsItsPool(t *testing.T) {
	prev := NumThreads()
	defer SetNumThreads(prev)
	SetNumThreads(4)
	before := osThreads(t)
	var tid int
	OnThrowawayThread(func() {
		tid = syscall.Gettid()
		x := Full(nil, 1, Float32, CPU, 1<<22) // big enough for a parallel region
		x.AddScalar(1).Free()
		x.Free()
	})
	// Threads end asynchronously; wait for them a bounded time.
	var after int
	for range 100 {
		_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
		if after = osThreads(t); errors.Is(err, fs.ErrNotExist) && after <= before+1 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("thread %d: %d OS threads before, %d after: the throwaway thread or its pool lives on", tid, before, after)
}
