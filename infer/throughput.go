package infer

import (
	"fmt"
	"time"
)

// Throughput is where the time of one embedding run went. The loader's workers decode the next
// batches (a bounded queue of LoaderOptions.Prefetch batches) while the backbone embeds the current
// one, so the run takes about the longer of the two parts, not their sum.
type Throughput struct {
	Images  int
	Workers int
	// Wall is the whole run; Forward the time inside the embed calls (the backbone busy); Wait the
	// time the backbone waited for the next decoded batch; Decode the decoders' time summed over
	// workers.
	Wall, Forward, Wait, Decode time.Duration
}

// Bound names what limits the run: "decoding" when the backbone waited for decoded batches for more
// than a tenth of the run, else "the backbone".
func (t Throughput) Bound() string {
	if t.Wait > t.Wall/10 {
		return "decoding"
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
	return fmt.Sprintf("%d images in %.1f s = %.1f images/s; backbone alone %.1f images/s (busy %.0f%% of the run), "+
		"decoding alone %.1f images/s (%d workers), both in turn %.1f images/s; waited %.1f s for decoded batches: bound by %s",
		t.Images, t.Wall.Seconds(), rate(t.Images, t.Wall), rate(t.Images, t.Forward), 100*t.Forward.Seconds()/max(t.Wall.Seconds(), 1e-9),
		rate(t.Images, decodeAlone), w, rate(t.Images, t.Forward+decodeAlone), t.Wait.Seconds(), t.Bound())
}
