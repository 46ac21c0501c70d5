package train

import (
	"math"
	"testing"
)

func TestSchedules(t *testing.T) {
	s := StepLR(1e-3, 0.5, 2000)
	nearLR(t, "step 0", s(0), 1e-3)
	nearLR(t, "step 1999", s(1999), 1e-3)
	nearLR(t, "step 2000", s(2000), 5e-4)
	nearLR(t, "step 4500", s(4500), 2.5e-4)
	c := CosineLR(0.1, 0, 10, 110)
	nearLR(t, "warmup 0", c(0), 0.01)
	nearLR(t, "warmup end", c(9), 0.1)
	nearLR(t, "cosine mid", c(60), 0.05)
	nearLR(t, "cosine end", c(110), 0)
}

func TestWarmupRampsThenFollows(t *testing.T) {
	w := withWarmup(StepLR(1e-3, 0.5, 10), 1e-3, 4)
	nearLR(t, "warmup 0", w(0), 2.5e-4)
	nearLR(t, "warmup 3", w(3), 1e-3)
	nearLR(t, "after", w(10), 5e-4)
}

func nearLR(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-12 {
		t.Fatalf("%s: lr %v, want %v", what, got, want)
	}
}
