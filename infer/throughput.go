package infer

import (
	"fmt"
	"syscall"
	"time"
)

// Throughput is where the time of one embedding run went. The loader's workers decode the next
// batches (a bounded queue of LoaderOptions.Prefetch batches) while the backbone embeds the current
// one, so the run takes about the longer of the two parts, not their sum, unless the two compete
// for the same cores.
type Throughput struct {
	Images  int
	Workers int
	// Wall is the whole run; Forward the time inside the embed calls (the backbone busy); Wait the
	// time the backbone waited for the next decoded batch; Decode the decoders' time summed over
	// workers; CPU the process's CPU time (user and system) over the run, on Cores cores (0: not
	// measured).
	Wall, Forward, Wait, Decode, CPU time.Duration
	Cores                            int
}

// cpuBusy is the share of the cores' time above which a run counts as bound by the CPU. Not 100 %:
// the libtorch threads idle in a forward call's serial parts while the decoders, a bounded queue
// ahead, are blocked (2 cores, Conv-4: 85–89 % busy with both parts slowed by the other).
const cpuBusy = 0.8

// Bound names what limits the run: "decoding" when the backbone waited for decoded batches for more
// than a tenth of the run; else "the CPU" when the process kept its cores over 80 % busy, so that
// decoding and the backbone slow each other down (both "alone" rates are then measured sharing the
// cores, and only more cores or less work per image help); else "the backbone".
func (t Throughput) Bound() string {
	switch {
	case t.Wait > t.Wall/10:
		return "decoding"
	case t.Cores > 0 && t.CPU.Seconds() >= cpuBusy*float64(t.Cores)*t.Wall.Seconds():
		return fmt.Sprintf("the CPU (decoding and the backbone share its %d cores)", t.Cores)
	}
	return "the backbone"
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// String reports images/s end to end against each part alone and their sum, and the bound.
func (t Throughput) String() string {
	w := max(t.Workers, 1)
	decodeAlone := t.Decode / time.Duration(w)
	wall := max(t.Wall.Seconds(), 1e-9)
	cpu := ""
	if t.Cores > 0 {
		cpu = fmt.Sprintf("; CPU %.0f%% of %d cores", 100*t.CPU.Seconds()/(wall*float64(t.Cores)), t.Cores)
	}
	return fmt.Sprintf("%d images in %.1f s = %.1f images/s; backbone alone %.1f images/s (busy %.0f%% of the run), "+
		"decoding alone %.1f images/s (%d workers), both in turn %.1f images/s; waited %.1f s for decoded batches%s: bound by %s",
		t.Images, t.Wall.Seconds(), rate(t.Images, t.Wall), rate(t.Images, t.Forward), 100*t.Forward.Seconds()/wall,
		rate(t.Images, decodeAlone), w, rate(t.Images, t.Forward+decodeAlone), t.Wait.Seconds(), cpu, t.Bound())
}

// ProcessCPU returns the CPU time (user and system) the process has used so far, or 0 where the
// system does not say.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
