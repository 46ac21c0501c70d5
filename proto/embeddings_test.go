package proto

import (
	"math"
	"path/filepath"
	"slices"
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

// The scale-benchmark generator writes inputs that load back with the promised shapes.
func TestGenerateScaleFixture(t *testing.T) {
	dir := t.TempDir()
	protos, emb, err := GenerateScaleFixture(dir, 10, 20, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(protos)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 11 || s.Dim() != 4 || s.Count(10) != 0 || s.Count(0) < 1 {
		t.Fatalf("store: %d classes, dim %d, class 10 has %d images, class 0 %d", s.Len(), s.Dim(), s.Count(10), s.Count(0))
	}
	e, err := LoadEmbeddings(emb)
	if err != nil {
		t.Fatal(err)
	}
	if e.Len() != 20 || e.Dim != 4 || e.Model != s.Model() {
		t.Fatalf("embeddings: %d rows of %d, model %q vs %q", e.Len(), e.Dim, e.Model, s.Model())
	}
}
