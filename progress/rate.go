package progress

import (
	"fmt"
	"time"
)

// Rate window: a bar's rate is the count over the last rateSpan of Add calls, shown only once the
// window holds at least minItems counted over at least minSpan, or has run for patientSpan. A rate
// from the first item alone (one item over the microseconds since the bar started) is what made
// bars print rates like 12,415,148 img/s.
const (
	rateSpan    = 10 * time.Second
	minItems    = 3
	minSpan     = time.Second
	patientSpan = 5 * time.Second
	maxSamples  = 128
)

// sample is the bar's count at one time.
type sample struct {
	t time.Time
	n int64
}

// window holds recent (time, count) samples, oldest first; the first one is the bar's start.
type window struct {
	s []sample
}

func newWindow(start time.Time) *window { return &window{s: []sample{{t: start}}} }

// add records that the count reached n at t, dropping samples older than rateSpan (keeping the
// last two whatever their age, so slow items still have a rate) and thinning when there are too many.
func (w *window) add(t time.Time, n int64) {
	w.s = append(w.s, sample{t, n})
	k := 0
	for k < len(w.s)-2 && t.Sub(w.s[k].t) > rateSpan {
		k++
	}
	w.s = w.s[k:]
	if len(w.s) > maxSamples {
		// Keep every other sample of the older half: the span stays, the cost stays bounded.
		half := len(w.s) / 2
		kept := w.s[:0]
		for i, x := range w.s {
			if i >= half || i%2 == 0 {
				kept = append(kept, x)
			}
		}
		w.s = kept
	}
}

// rate returns the items per second over the window, and false while it is too early to say.
func (w *window) rate() (float64, bool) {
	first, last := w.s[0], w.s[len(w.s)-1]
	span := last.t.Sub(first.t)
	items := last.n - first.n
	if span <= 0 || items <= 0 {
		return 0, false
	}
	if !(items >= minItems && span >= minSpan) && span < patientSpan {
		return 0, false
	}
	return float64(items) / span.Seconds(), true
}

// status formats the rate and the time left to total ("" while too early): "37.5 img/s, 1m12s left".
func (w *window) status(unit string, done, total int64) string {
	r, ok := w.rate()
	if !ok {
		return ""
	}
	var s string
	switch {
	case r >= 100:
		s = fmt.Sprintf("%.0f %s/s", r, unit)
	case r >= 1:
		s = fmt.Sprintf("%.1f %s/s", r, unit)
	default:
		s = fmt.Sprintf("%.1f s/%s", 1/r, unit)
	}
	if total > 0 && done < total {
		left := time.Duration(float64(total-done) / r * float64(time.Second)).Round(time.Second)
		s += fmt.Sprintf(", %s left", left)
	}
	return s
}
