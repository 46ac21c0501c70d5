package progress

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestNoRateFromTheFirstItems is the bar that printed 12,415,148 img/s: one item a few microseconds
// after the bar started must not show a rate.
func TestNoRateFromTheFirstItems(t *testing.T) {
	var out bytes.Buffer
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := New(1000, "decode", Options{Writer: &out, Unit: "img", clock: clk.now})
	clk.advance(3 * time.Microsecond)
	b.Add(1)
	clk.advance(5 * time.Microsecond)
	b.Add(1)
	if s := out.String(); strings.Contains(s, "img/s") || strings.Contains(s, "left") {
		t.Fatalf("a rate after 2 items in 8µs: %q", s)
	}
	if got := b.line(); got != "decode" {
		t.Errorf("description %q, want it without a rate", got)
	}
	// Three items over a second and a half: now the rate is real.
	clk.advance(1500 * time.Millisecond)
	b.Add(1)
	want := "decode (2.0 img/s, 8m19s left)" // 3 items in 1.5 s; 997 left
	if got := b.line(); got != want {
		t.Errorf("line %q, want %q", got, want)
	}
}

func TestRateFollowsAMovingWindow(t *testing.T) {
	start := time.Unix(1000, 0)
	w := newWindow(start)
	now, n := start, int64(0)
	feed := func(perSec int, d time.Duration) {
		step := time.Second / time.Duration(perSec)
		for end := now.Add(d); now.Before(end); {
			now = now.Add(step)
			n++
			w.add(now, n)
		}
	}
	// A burst at start-up (a cache hit, say), then a steady 50/s for a minute: the burst is forgotten.
	w.add(start.Add(time.Millisecond), 500)
	n = 500
	feed(50, time.Minute)
	if r, ok := w.rate(); !ok || math.Abs(r-50) > 1 {
		t.Errorf("after a minute at 50/s: rate %.2f (%v), want 50", r, ok)
	}
	// It slows to 2/s: within one window span the rate says so.
	feed(2, 12*time.Second)
	if r, ok := w.rate(); !ok || math.Abs(r-2) > 0.3 {
		t.Errorf("after 12 s at 2/s: rate %.2f (%v), want 2", r, ok)
	}
	if len(w.s) > maxSamples {
		t.Errorf("window holds %d samples, limit %d", len(w.s), maxSamples)
	}
}

// TestSlowItemsShowARateEventually: one item every 8 seconds (a slow step) still gets a rate.
func TestSlowItemsShowARateEventually(t *testing.T) {
	start := time.Unix(0, 0)
	w := newWindow(start)
	w.add(start.Add(8*time.Second), 1)
	r, ok := w.rate()
	if !ok || math.Abs(r-0.125) > 1e-9 {
		t.Fatalf("one item in 8 s: rate %v (%v), want 0.125", r, ok)
	}
	if got := w.status("step", 1, 3); got != "8.0 s/step, 16s left" {
		t.Errorf("status %q", got)
	}
}
