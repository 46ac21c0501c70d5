package infer

import (
	"strings"
	"testing"
	"time"
)

func TestThroughputBoundAndReport(t *testing.T) {
	busy := Throughput{Images: 100, Workers: 2, Wall: 10 * time.Second, Forward: 9500 * time.Millisecond,
		Wait: 300 * time.Millisecond, Decode: 12 * time.Second}
	if got := busy.Bound(); got != "the backbone" {
		t.Errorf("backbone busy 95%%, waited 3%%: bound %q, want the backbone", got)
	}
	starved := Throughput{Images: 100, Workers: 2, Wall: 10 * time.Second, Forward: 4 * time.Second,
		Wait: 6 * time.Second, Decode: 19 * time.Second}
	if got := starved.Bound(); got != "decoding" {
		t.Errorf("waited 60%% of the run: bound %q, want decoding", got)
	}
	s := starved.String()
	// 100 images in 10 s; forward alone 100/4 s; decoding alone 100/(19/2) s; in turn 100/13.5 s.
	for _, want := range []string{"= 10.0 images/s", "backbone alone 25.0 images/s (busy 40% of the run)",
		"decoding alone 10.5 images/s (2 workers)", "both in turn 7.4 images/s", "bound by decoding"} {
		if !strings.Contains(s, want) {
			t.Errorf("report %q lacks %q", s, want)
		}
	}
	if (Throughput{}).String() == "" {
		t.Error("empty report for an empty run")
	}
}
