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
	// Decoders and backbone never wait on each other, but the process keeps its 2 cores 95 % busy:
	// both slow each other down, and the CPU is the bound.
	shared := busy
	shared.Cores, shared.CPU = 2, 19*time.Second
	if got := shared.Bound(); !strings.HasPrefix(got, "the CPU") {
		t.Errorf("2 cores 95%% busy: bound %q, want the CPU", got)
	}
	if s := shared.String(); !strings.Contains(s, "CPU 95% of 2 cores: bound by the CPU") {
		t.Errorf("report %q does not give the CPU share and bound", s)
	}
	if got := (Throughput{Images: 100, Wall: 10 * time.Second, Cores: 8, CPU: 30 * time.Second}).Bound(); got != "the backbone" {
		t.Errorf("8 cores 38%% busy, no wait: bound %q, want the backbone", got)
	}
	if (Throughput{}).String() == "" {
		t.Error("empty report for an empty run")
	}
}
