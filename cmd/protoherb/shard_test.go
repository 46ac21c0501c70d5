package main

import (
	"math"
	"path/filepath"
	"testing"

	"protoherb/proto"
)

// An Indexed Job of 2 pods (JOB_COMPLETION_INDEX with --shards 2) writes 2 prototype files, named
// from --out's {shard}, and prototypes merge gives the unsharded file's counts and means.
func TestPrototypeShardsFromTheEnvironmentMerge(t *testing.T) {
	data, model := fixture(t)
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.safetensors")
	if out, err := run(t, "prototypes", "--model", model, "--data", data, "--out", whole, "--quiet"); err != nil {
		t.Fatalf("prototypes: %v\n%s", err, out)
	}
	for _, i := range []string{"0", "1"} {
		t.Setenv("JOB_COMPLETION_INDEX", i)
		if out, err := run(t, "prototypes", "--model", model, "--data", data, "--shards", "2", "--out", filepath.Join(dir, "p-{shard}.safetensors"), "--quiet"); err != nil {
			t.Fatalf("shard %s: %v\n%s", i, err, out)
		}
	}
	t.Setenv("JOB_COMPLETION_INDEX", "")
	merged := filepath.Join(dir, "merged.safetensors")
	if out, err := run(t, "prototypes", "merge", filepath.Join(dir, "p-0.safetensors"), filepath.Join(dir, "p-1.safetensors"), "--out", merged); err != nil {
		t.Fatalf("merge: %v\n%s", err, out)
	}
	a, err := proto.Load(whole)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Load(merged)
	if err != nil {
		t.Fatal(err)
	}
	if a.Total() != b.Total() || a.Len() != b.Len() || a.Total() == 0 {
		t.Fatalf("merged shards: %d images in %d classes, whole: %d in %d", b.Total(), b.Len(), a.Total(), a.Len())
	}
	for _, c := range a.Classes() {
		if a.Count(c.ID) != b.Count(c.ID) {
			t.Fatalf("class %d: %d images merged, %d whole", c.ID, b.Count(c.ID), a.Count(c.ID))
		}
		ma, mb := a.Mean(c.ID), b.Mean(c.ID)
		for k := range ma {
			if math.Abs(ma[k]-mb[k]) > 1e-5*math.Max(1, math.Abs(ma[k])) {
				t.Fatalf("class %d, dimension %d: merged mean %v, whole %v", c.ID, k, mb[k], ma[k])
			}
		}
	}
}
