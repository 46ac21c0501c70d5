package proto

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testClasses() []Class {
	return []Class{
		{ID: 3, Name: "Acer rubrum", Genus: "Acer", Family: "Sapindaceae"},
		{ID: 7, Name: "Acer saccharum", Genus: "Acer", Family: "Sapindaceae"},
		{ID: 9, Name: "Aesculus glabra", Genus: "Aesculus", Family: "Sapindaceae"},
		{ID: 12, Name: "Carex ×stipata Müll.", Genus: "Carex", Family: "Cyperaceae"},
	}
}

func TestAccumulateMeans(t *testing.T) {
	s, err := New(2, "m1", testClasses(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Accumulate([]float32{1, 2, 3, 4, 10, 10}, []int64{3, 3, 9}, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Mean(3); !slices.Equal(got, []float64{2, 3}) {
		t.Errorf("mean of class 3 = %v, want [2 3]", got)
	}
	if s.Count(3) != 2 || s.Count(9) != 1 || s.Count(7) != 0 || s.Total() != 3 {
		t.Errorf("counts %d %d %d total %d", s.Count(3), s.Count(9), s.Count(7), s.Total())
	}
	p, err := s.Build(Build{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.IDs(), []int64{3, 9}) || !slices.Equal(p.Excluded, []int64{7, 12}) {
		t.Errorf("prototypes %v excluded %v, want [3 9] and [7 12]", p.IDs(), p.Excluded)
	}
	if !slices.Equal(p.Vectors, []float32{2, 3, 10, 10}) {
		t.Errorf("vectors %v", p.Vectors)
	}
}

func TestNormalizeEmbeddings(t *testing.T) {
	s, _ := New(2, "m", testClasses(), Options{NormalizeEmbeddings: true})
	if err := s.Accumulate([]float32{3, 4, 0, 10}, []int64{3, 3}, nil); err != nil {
		t.Fatal(err)
	}
	m := s.Mean(3)
	if math.Abs(m[0]-0.3) > 1e-12 || math.Abs(m[1]-0.9) > 1e-12 {
		t.Errorf("mean of unit embeddings = %v, want [0.3 0.9]", m)
	}
	p, _ := s.Build(Build{})
	q := []float32{30, 40}
	if err := p.Transform(q); err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(q[0])-0.6) > 1e-6 || math.Abs(float64(q[1])-0.8) > 1e-6 {
		t.Errorf("transformed query %v, want [0.6 0.8]", q)
	}
	if err := p.Transform([]float32{1, 2, 3}); err == nil || !strings.Contains(err.Error(), "dimension 2") {
		t.Errorf("query of dimension 3: error %v", err)
	}
}

func TestBadEmbeddings(t *testing.T) {
	s, _ := New(3, "m", testClasses(), Options{})
	nan := float32(math.NaN())
	err := s.Accumulate([]float32{1, 2, 3, 4, nan, 6}, []int64{3, 7}, []int64{1001, 1002})
	if err == nil || !strings.Contains(err.Error(), "row 1 (image 1002)") {
		t.Errorf("NaN in row 1: error %v, want one naming row 1 (image 1002)", err)
	}
	if s.Total() != 0 {
		t.Errorf("a failed Accumulate added %d embeddings", s.Total())
	}
	if err := s.Accumulate(make([]float32, 8), []int64{3, 7}, nil); err == nil || !strings.Contains(err.Error(), "dimension 4, the prototypes 3") {
		t.Errorf("dimension 4 into a 3-d store: error %v", err)
	}
	if err := s.Accumulate(make([]float32, 6), []int64{3, 99}, nil); err == nil || !strings.Contains(err.Error(), "label 99") {
		t.Errorf("unknown label: error %v", err)
	}
	if _, err := New(3, "m", append(testClasses(), Class{ID: 3}), Options{}); err == nil {
		t.Error("duplicate class id: no error")
	}
	empty, _ := New(3, "m", testClasses(), Options{})
	if _, err := empty.Build(Build{}); err == nil {
		t.Error("Build with no images at all: no error")
	}
}

func TestAddClass(t *testing.T) {
	s, _ := New(2, "m", testClasses(), Options{})
	if err := s.Add(Class{ID: 40, Name: "Acer novum", Genus: "Acer", Family: "Sapindaceae"}, []float32{1, 1, 3, 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Class{ID: 40}, []float32{5, 5}); err != nil {
		t.Fatal(err)
	}
	c, ok := s.Class(40)
	if !ok || c.Name != "Acer novum" || s.Count(40) != 3 || !slices.Equal(s.Mean(40), []float64{3, 3}) {
		t.Errorf("class 40 = %+v count %d mean %v", c, s.Count(40), s.Mean(40))
	}
	if err := s.Add(Class{ID: 41}, []float32{1, 2, 3}); err == nil {
		t.Error("Add with 3 values in a 2-d store: no error")
	}
	if _, ok := s.Class(41); ok {
		t.Error("a failed Add created the class")
	}
}

func randomStore(t *testing.T, rng *rand.Rand, classes []Class, n int, opt Options) (*Store, []float32, []int64) {
	t.Helper()
	s, err := New(5, "fp", classes, opt)
	if err != nil {
		t.Fatal(err)
	}
	emb := make([]float32, n*5)
	for i := range emb {
		emb[i] = float32(rng.NormFloat64())
	}
	labels := make([]int64, n)
	for i := range labels {
		labels[i] = classes[rng.IntN(len(classes))].ID
	}
	return s, emb, labels
}

func TestMergeShardsEqualsOnePass(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, opt := range []Options{{}, {NormalizeEmbeddings: true}} {
		all, emb, labels := randomStore(t, rng, testClasses(), 300, opt)
		if err := all.Accumulate(emb, labels, nil); err != nil {
			t.Fatal(err)
		}
		// Three shards, the last knowing only some classes.
		var shards []*Store
		for i, cut := range [][2]int{{0, 100}, {100, 180}, {180, 300}} {
			cls := testClasses()
			if i == 2 {
				cls = nil
				for _, l := range labels[cut[0]:cut[1]] {
					if !slices.ContainsFunc(cls, func(c Class) bool { return c.ID == l }) {
						c, _ := all.Class(l)
						cls = append(cls, c)
					}
				}
			}
			sh, _ := New(5, "fp", cls, opt)
			if err := sh.Accumulate(emb[cut[0]*5:cut[1]*5], labels[cut[0]:cut[1]], nil); err != nil {
				t.Fatal(err)
			}
			shards = append(shards, sh)
		}
		m, err := Merge(shards[2], shards[0], shards[1])
		if err != nil {
			t.Fatal(err)
		}
		// The same shards as files, merged one file at a time: the same store, sum for sum.
		var paths []string
		for i, sh := range []*Store{shards[2], shards[0], shards[1]} {
			paths = append(paths, filepath.Join(t.TempDir(), fmt.Sprintf("shard-%d.safetensors", i)))
			if err := sh.Save(paths[i]); err != nil {
				t.Fatal(err)
			}
		}
		mf, err := MergeFiles(context.Background(), paths)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(mf.sums, m.sums) || !slices.Equal(mf.counts, m.counts) || !slices.Equal(mf.classes, m.classes) {
			t.Fatal("MergeFiles differs from Merge of the same shards")
		}
		if m.Len() != all.Len() || m.Total() != all.Total() {
			t.Fatalf("merged %d classes %d images, want %d and %d", m.Len(), m.Total(), all.Len(), all.Total())
		}
		for _, c := range all.Classes() {
			a, b := all.Mean(c.ID), m.Mean(c.ID)
			for j := range a {
				if math.Abs(a[j]-b[j]) > 1e-14*(1+math.Abs(a[j])) {
					t.Fatalf("class %d: merged mean %v, one pass %v", c.ID, b, a)
				}
			}
			if all.Count(c.ID) != m.Count(c.ID) {
				t.Fatalf("class %d: count %d vs %d", c.ID, m.Count(c.ID), all.Count(c.ID))
			}
		}
	}
}

func TestMergeRefusesMismatches(t *testing.T) {
	a, _ := New(4, "model-a", testClasses(), Options{})
	cases := map[string]*Store{}
	cases["dimension"], _ = New(8, "model-a", testClasses(), Options{})
	cases["model"], _ = New(4, "model-b", testClasses(), Options{})
	cases["NormalizeEmbeddings"], _ = New(4, "model-a", testClasses(), Options{NormalizeEmbeddings: true})
	cases["Acer other"], _ = New(4, "model-a", []Class{{ID: 3, Name: "Acer other"}}, Options{})
	for want, b := range cases {
		if _, err := Merge(a, b); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("merge with a different %s: error %v", want, err)
		}
	}
}

// TestMergeFilesNamesTheFile checks that a missing file and a mismatched shard are errors naming
// the file.
func TestMergeFilesNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	a, _ := New(4, "model-a", testClasses(), Options{})
	b, _ := New(4, "model-b", testClasses(), Options{})
	pa, pb := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors")
	if err := errors.Join(a.Save(pa), b.Save(pb)); err != nil {
		t.Fatal(err)
	}
	if _, err := MergeFiles(context.Background(), []string{pa, pb}); err == nil || !strings.Contains(err.Error(), pb) || !strings.Contains(err.Error(), "model-b") {
		t.Errorf("mismatched shard: %v", err)
	}
	missing := filepath.Join(dir, "none.safetensors")
	if _, err := MergeFiles(context.Background(), []string{pa, missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing shard: %v", err)
	}
	if _, err := MergeFiles(context.Background(), nil); err == nil {
		t.Error("no files: no error")
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	s, emb, labels := randomStore(t, rng, testClasses(), 50, Options{NormalizeEmbeddings: true})
	if err := s.Accumulate(emb, labels, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "protos.safetensors")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if l.Dim() != 5 || l.Model() != "fp" || l.Options() != s.Options() || !slices.Equal(l.Classes(), s.Classes()) {
		t.Fatalf("loaded dim %d model %q options %+v classes %v", l.Dim(), l.Model(), l.Options(), l.Classes())
	}
	if !slices.Equal(l.sums, s.sums) || !slices.Equal(l.counts, s.counts) || !slices.Equal(l.sqnorms, s.sqnorms) {
		t.Fatal("loaded sums, counts or sqnorms differ")
	}
	// Overwriting with a failing save (a NaN cannot occur through Accumulate, so use a bad path)
	// leaves the good file in place.
	if err := s.Save(filepath.Join(t.TempDir(), "missing", "x.safetensors")); err == nil {
		t.Error("save into a missing folder: no error")
	}
	if err := os.WriteFile(path+".bad", []byte("not safetensors"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path + ".bad"); err == nil {
		t.Error("loading garbage: no error")
	}
}

func TestShrinkFormula(t *testing.T) {
	// One image in class 3, two in class 7 (same genus), four in class 9 (same family only).
	s, _ := New(1, "m", testClasses(), Options{})
	if err := s.Accumulate([]float32{0, 6, 6, 12, 12, 12, 12}, []int64{3, 7, 7, 9, 9, 9, 9}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := s.Build(Build{ShrinkGenus: 1, ShrinkFamily: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Class 3: mean 0, genus (others: class 7) 6 → (1·0 + 1·6)/2 = 3;
	// family (others: 7 and 9) mean 9 → (1·3 + 2·9)/3 = 7.
	// Class 7: mean 6, genus 0 → (2·6 + 0)/3 = 4; family (3 and 9) 6 → (2·4 + 2·6)/4 = 5.
	// Class 9: alone in its genus; family (3 and 7) 3 → (4·12 + 2·3)/6 = 9.
	want := []float32{7, 5, 9}
	for i, w := range want {
		if math.Abs(float64(p.Vectors[i]-w)) > 1e-6 {
			t.Errorf("class %d: prototype %v, want %v", p.Classes[i].ID, p.Vectors[i], w)
		}
	}
}

func TestCenterAndNormalize(t *testing.T) {
	s, _ := New(2, "m", testClasses(), Options{})
	if err := s.Accumulate([]float32{11, 10, 9, 10}, []int64{3, 7}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := s.Build(Build{Center: true, Normalize: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Vectors, []float32{1, 0, -1, 0}) || !slices.Equal(p.Mean, []float32{10, 10}) {
		t.Errorf("vectors %v mean %v", p.Vectors, p.Mean)
	}
	q := []float32{10, 13}
	p.Transform(q)
	if !slices.Equal(q, []float32{0, 1}) {
		t.Errorf("transformed query %v, want [0 1]", q)
	}
}

// TestNewSizesOnce checks that a store of many classes is allocated once, not grown class by class:
// growing the sums one class at a time copied them ~log2(n) times, which was most of the time a
// Herbarium-sized prototype file took to load.
func TestNewSizesOnce(t *testing.T) {
	classes := make([]Class, 4096)
	for i := range classes {
		classes[i] = Class{ID: int64(i), Name: fmt.Sprintf("species %d", i)}
	}
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := New(64, "m", classes, Options{}); err != nil {
			t.Fatal(err)
		}
	})
	// The store, its five slices and the map's buckets; growing would add ~13 per slice.
	if allocs > 40 {
		t.Fatalf("New of %d classes made %.0f allocations, want the slices sized once", len(classes), allocs)
	}
}
