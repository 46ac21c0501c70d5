package proto

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestEmbeddingsRoundTripAndBadRows(t *testing.T) {
	dir := t.TempDir()
	e := &Embeddings{Dim: 3, Model: "m@1", Split: "test", IDs: []int64{5, 6}, Labels: []int64{-1, 3},
		Vectors: []float32{1, 2, 3, 4, 5, 6}, Failed: []int64{6}, Classes: testClasses()}
	path := filepath.Join(dir, "e.safetensors")
	if err := e.Save(path); err != nil {
		t.Fatal(err)
	}
	l, err := LoadEmbeddings(path)
	if err != nil {
		t.Fatal(err)
	}
	if l.Dim != 3 || l.Model != "m@1" || l.Split != "test" || !slices.Equal(l.IDs, e.IDs) || !slices.Equal(l.Labels, e.Labels) ||
		!slices.Equal(l.Vectors, e.Vectors) || !slices.Equal(l.Failed, e.Failed) || !slices.Equal(l.Classes, e.Classes) {
		t.Fatalf("round trip: %+v", l)
	}
	e.Vectors[4] = float32(math.NaN())
	bad := filepath.Join(dir, "nan.safetensors")
	if err := e.Save(bad); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadEmbeddings(bad); err == nil || !strings.Contains(err.Error(), "row 1 (image 6)") {
		t.Errorf("NaN row: error %v, want one naming row 1 (image 6)", err)
	}
	other := &Embeddings{Dim: 4, Model: "m@2", IDs: []int64{1}, Labels: []int64{-1}, Vectors: make([]float32, 4)}
	if _, err := ConcatEmbeddings(l, other); err == nil {
		t.Error("joining embeddings of two models: no error")
	}
	if _, err := ConcatEmbeddings(l, l); err == nil || !strings.Contains(err.Error(), "image 5") {
		t.Errorf("joining a file with itself: error %v", err)
	}
}

func TestSetShrink(t *testing.T) {
	var b Build
	if err := b.SetShrink("genus=1.5,family=0.5"); err != nil || b.ShrinkGenus != 1.5 || b.ShrinkFamily != 0.5 || b.AutoShrink {
		t.Errorf("genus=1.5,family=0.5 → %+v, %v", b, err)
	}
	if err := b.SetShrink("auto"); err != nil || !b.AutoShrink || b.ShrinkGenus != 0 {
		t.Errorf("auto → %+v, %v", b, err)
	}
	for _, bad := range []string{"genus", "genus=-1", "order=2", "genus=x"} {
		if err := b.SetShrink(bad); err == nil {
			t.Errorf("--shrink %q: no error", bad)
		}
	}
}

// TestWriteFullScaleFixture writes the Herbarium 2020-shaped inputs of the predict benchmark
// (32,093 classes with 1–60 random training embeddings' sums, 138,292 test embeddings, 512-d) into
// $PROTOHERB_PREDICT_FIXTURE; it is skipped without that variable.
func TestWriteFullScaleFixture(t *testing.T) {
	dir := os.Getenv("PROTOHERB_PREDICT_FIXTURE")
	if dir == "" {
		t.Skip("set PROTOHERB_PREDICT_FIXTURE=DIR to write the full-scale predict benchmark inputs")
	}
	const classes, queries, dim = 32093, 138292, 512
	rng := rand.New(rand.NewPCG(2020, 7))
	cs := make([]Class, classes+1) // plus one class without images, as in Herbarium 2020
	for i := range cs {
		cs[i] = Class{ID: int64(i), Name: "species " + strconv.Itoa(i), Genus: "g" + strconv.Itoa(i/8), Family: "f" + strconv.Itoa(i/200)}
	}
	s, err := New(dim, "bench@0", cs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Each class: a random centre, 1–3 embeddings around it (the sums are what matter here).
	vec := make([]float32, dim)
	for c := range classes {
		for range 1 + rng.IntN(3) {
			for j := range vec {
				vec[j] = float32(rng.NormFloat64())
			}
			if err := s.Accumulate(vec, []int64{int64(c)}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Save(filepath.Join(dir, "protos.safetensors")); err != nil {
		t.Fatal(err)
	}
	e := &Embeddings{Dim: dim, Model: "bench@0", Split: "test", IDs: make([]int64, queries), Labels: make([]int64, queries),
		Vectors: make([]float32, queries*dim)}
	for i := range e.IDs {
		e.IDs[i], e.Labels[i] = int64(i), -1
	}
	for i := range e.Vectors {
		e.Vectors[i] = float32(rng.NormFloat64())
	}
	if err := e.Save(filepath.Join(dir, "test.safetensors")); err != nil {
		t.Fatal(err)
	}
}
