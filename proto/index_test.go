package proto

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
)

func randomRows(r *rand.Rand, n, d int) []float32 {
	v := make([]float32, n*d)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// writeFile saves a store of classes 0..n-1 (two random embeddings each) and returns its path.
func writeFile(t *testing.T, n, d int, b Build) string {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	s, err := New(d, "m@1", nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, _, err := s.Enrol(Class{ID: AutoID, Name: fmt.Sprintf("Species %d", i), Genus: fmt.Sprintf("G%d", i/3)}, randomRows(r, 2, d)); err != nil {
			t.Fatal(err)
		}
	}
	s.SetDefaultBuild(b)
	path := filepath.Join(t.TempDir(), "p.safetensors")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// openTwo opens path twice, as two writers of one file; the test closes them.
func openTwo(t *testing.T, path string) (a, b *Index) {
	t.Helper()
	var err error
	for _, x := range []**Index{&a, &b} {
		if *x, err = Open(path, OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup((*x).Close)
	}
	return a, b
}

// Two writers of one file (two processes, as `prototypes add` next to a running server) enrol
// concurrently: every species is in the file once, with a unique id, and every image counted.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	const d = 8
	path := writeFile(t, 5, d, Build{})
	a, b := openTwo(t, path)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w, x := range []*Index{a, b} {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range 25 {
				if _, err := x.Enrol(Class{ID: AutoID, Name: fmt.Sprintf("New %d-%d", w, i)}, randomRows(r, 1, d), ""); err != nil {
					errs <- err
				}
				// Both writers also add to one shared species.
				if _, err := x.Enrol(Class{ID: AutoID, Name: "shared  SPECIES"}, randomRows(r, 1, d), ""); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 5+50+1 {
		t.Fatalf("%d species in the file, want 56", s.Len())
	}
	ids := map[int64]bool{}
	for _, c := range s.Classes() {
		if ids[c.ID] {
			t.Fatalf("id %d used twice", c.ID)
		}
		ids[c.ID] = true
	}
	shared, ok := s.Lookup("Shared species")
	if !ok || s.Count(shared.ID) != 50 || s.Total() != 10+50+50 {
		t.Fatalf("shared species %+v with %d images, %d images in all", shared, s.Count(shared.ID), s.Total())
	}
	if s.gen != 100 {
		t.Errorf("generation %d after 100 enrolments", s.gen)
	}
}

// Another writer's save that leaves inode, size and modification time as they were (ext4 reuses
// freed inodes; file times move by the tick) is still seen, by the generation in the header.
func TestChangeSeenWhenTheStatLooksTheSame(t *testing.T) {
	const d = 4
	path := writeFile(t, 3, d, Build{})
	a, b := openTwo(t, path)
	if _, err := b.Enrol(Class{ID: AutoID, Name: "Rosa nova"}, []float32{1, 2, 3, 4}, ""); err != nil {
		t.Fatal(err)
	}
	// a's stamp now equals the file's, as after such a collision.
	now, err := statFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st := *a.current()
	st.stamp = now
	a.swap(&st)
	if _, err := a.Enrol(Class{ID: AutoID, Name: "Rosa altera"}, []float32{4, 3, 2, 1}, ""); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Rosa nova", "Rosa altera"} {
		if c, ok := s.Lookup(name); !ok || s.Count(c.ID) != 1 {
			t.Errorf("%s: in the file %v, %d images", name, ok, s.Count(c.ID))
		}
	}
}

// A retried enrolment (same idempotency key) is applied once, also by another writer of the file.
func TestIdempotencyKey(t *testing.T) {
	path := writeFile(t, 3, 4, Build{})
	x, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	e1, err := x.Enrol(Class{ID: AutoID, Name: "Rosa nova"}, []float32{1, 2, 3, 4}, "key-1")
	if err != nil || !e1.Created || e1.Replayed || e1.Species.Count != 1 {
		t.Fatalf("first: %+v %v", e1, err)
	}
	y, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	e2, err := y.Enrol(Class{ID: AutoID, Name: "Rosa nova"}, []float32{1, 2, 3, 4}, "key-1")
	if err != nil || !e2.Replayed || e2.Created || e2.Species.ID != e1.Species.ID || e2.Species.Count != 1 {
		t.Fatalf("retry: %+v %v", e2, err)
	}
	if e3, err := x.Enrol(Class{ID: AutoID, Name: "Rosa nova"}, []float32{1, 2, 3, 4}, "key-2"); err != nil || e3.Species.Count != 2 {
		t.Fatalf("another key: %+v %v", e3, err)
	}
}

// The spacing temperature kept up at each enrolment equals the one computed from scratch (plain
// means, new species), and it is recorded: a restart finds it unchanged.
func TestSpacingTemperatureIncrementalAndRecorded(t *testing.T) {
	const d = 6
	path := writeFile(t, 12, d, Build{})
	x, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c0, err := x.SetCalibration(Calibration{Source: SourceSpacing})
	if err != nil || !(c0.Temperature > 0) {
		t.Fatalf("calibration %+v %v", c0, err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	for i := range 4 {
		if _, err := x.Enrol(Class{ID: AutoID, Name: fmt.Sprintf("Added %d", i)}, randomRows(r, 3, d), ""); err != nil {
			t.Fatal(err)
		}
	}
	got := x.Calibration()
	x.Close()
	// From scratch: the same file with no distances known.
	fresh, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range fresh.nearest {
		fresh.nearest[i] = math.NaN()
	}
	p, err := fresh.Build(Build{})
	if err != nil {
		t.Fatal(err)
	}
	x2, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer x2.Close()
	if err := fresh.sampleNearest(p, x2.cur.flat, 4096); err != nil {
		t.Fatal(err)
	}
	want, _ := fresh.spacingTemperature()
	if math.Abs(got.Temperature-want) > 1e-4*want || got.Source != SourceSpacing {
		t.Errorf("incremental temperature %v (%s), from scratch %v", got.Temperature, got.Source, want)
	}
	if again := x2.Calibration(); again != got {
		t.Errorf("after a restart the calibration is %+v, was %+v", again, got)
	}
	// Another build makes the recorded temperature not apply.
	x3, err := Open(path, OpenOptions{Edit: func(b Build) (Build, error) { b.Normalize = true; return b, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer x3.Close()
	if c := x3.Calibration(); c.Temperature != 0 {
		t.Errorf("calibration for another build: %+v", c)
	}
}

// Open applies the recorded build; a search ranks by the built prototypes; Reconstruct returns one.
func TestIndexAppliesRecordedBuild(t *testing.T) {
	path := writeFile(t, 6, 5, Build{Center: true, Normalize: true})
	x, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if b := x.Build(); !b.Center || !b.Normalize {
		t.Fatalf("build %+v, want the recorded center+normalize", b)
	}
	p := x.Reconstruct(3)
	var n float64
	for _, v := range p {
		n += float64(v) * float64(v)
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("reconstructed prototype has squared length %v, want 1 (normalized)", n)
	}
	s, _ := Load(path)
	q := make([]float32, 5)
	for j, v := range s.Mean(3) {
		q[j] = float32(v)
	}
	_, ids, err := x.Search(context.Background(), q, 1)
	if err != nil || ids[0] != 3 {
		t.Errorf("the mean of class 3 searched: %v %v", ids, err)
	}
	if _, _, err := x.Search(context.Background(), []float32{1, 2}, 1); err == nil {
		t.Error("a query of another dimension was searched")
	}
}
