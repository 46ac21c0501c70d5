package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"protoherb/cmd/protoherb/internal/servebench"
	"protoherb/demo/service"
	"protoherb/serve"
	"protoherb/torch"
)

// --enrol-species times enrolments into a generated file of many species, losing none.
func TestBenchServeEnrolAtScale(t *testing.T) {
	d, err := service.Make(context.Background(), t.TempDir(), service.Options{Species: 4, PerClass: 2, Seed: 7, Reseed: torch.ManualSeed})
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(d.Images[0][0])
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	o := servebench.Options{Duration: 200 * time.Millisecond, Images: [][]byte{img}, Out: &out,
		Files: serve.Files{Model: d.Model, Prototypes: d.Prototypes}}
	if err := enrolAtScale(context.Background(), o, 300); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "enrolment at 300 species") {
		t.Errorf("no enrolment latency line:\n%s", out.String())
	}
}
