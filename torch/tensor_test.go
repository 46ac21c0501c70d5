package torch

import (
	"errors"
	"math"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestRoundTripDTypes(t *testing.T) {
	s := NewScope()
	defer s.Close()
	f := FromFloat32(s, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	if got := f.Shape(); !reflect.DeepEqual(got, []int64{2, 3}) {
		t.Fatalf("shape %v", got)
	}
	if f.DType() != Float32 || f.Device() != CPU {
		t.Fatalf("dtype %v device %v", f.DType(), f.Device())
	}
	if got := must[[]float32](t)(f.Float32s()); !reflect.DeepEqual(got, []float32{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("float32 %v", got)
	}
	i := FromInt64(s, []int64{-1, 1 << 40}, 2)
	if got := must[[]int64](t)(i.Int64s()); !reflect.DeepEqual(got, []int64{-1, 1 << 40}) {
		t.Fatalf("int64 %v", got)
	}
	u := FromUint8(s, []uint8{0, 255, 7}, 3)
	if got := must[[]uint8](t)(u.Uint8s()); !reflect.DeepEqual(got, []uint8{0, 255, 7}) {
		t.Fatalf("uint8 %v", got)
	}
	d := FromFloat64(s, []float64{math.Pi}, 1)
	if got := must[float64](t)(d.Item()); got != math.Pi {
		t.Fatalf("item %v", got)
	}
	// Conversion and views.
	if got := must[[]float32](t)(u.ToDType(Float32).Float32s()); !reflect.DeepEqual(got, []float32{0, 255, 7}) {
		t.Fatalf("to float32 %v", got)
	}
	if got := must[[]float32](t)(f.T().Contiguous().Float32s()); !reflect.DeepEqual(got, []float32{1, 4, 2, 5, 3, 6}) {
		t.Fatalf("transpose %v", got)
	}
	view := must[[]float32](t)(f.Float32View())
	if view[5] != 6 {
		t.Fatalf("view %v", view)
	}
	if _, err := f.T().Float32View(); err == nil {
		t.Fatal("view of a non-contiguous tensor must fail")
	}
	if s.Len() == 0 {
		t.Fatal("scope owns nothing")
	}
}

func TestShapeOps(t *testing.T) {
	s := NewScope()
	defer s.Close()
	x := FromFloat32(s, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 3, 4)
	cases := []struct {
		name  string
		t     *Tensor
		shape []int64
		want  []float32
	}{
		{"reshape", x.Reshape(4, -1), []int64{4, 3}, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"narrow", x.Narrow(1, 1, 2), []int64{3, 2}, []float32{1, 2, 5, 6, 9, 10}},
		{"slice", x.Slice(0, 0, 3, 2), []int64{2, 4}, []float32{0, 1, 2, 3, 8, 9, 10, 11}},
		{"select", x.Select(0, 1), []int64{4}, []float32{4, 5, 6, 7}},
		{"index_select", x.IndexSelect(0, FromInt64(s, []int64{2, 0}, 2)), []int64{2, 4}, []float32{8, 9, 10, 11, 0, 1, 2, 3}},
		{"cat", Cat([]*Tensor{x.Narrow(0, 0, 1), x.Narrow(0, 2, 1)}, 0), []int64{2, 4}, []float32{0, 1, 2, 3, 8, 9, 10, 11}},
		{"stack", Stack([]*Tensor{x.Select(1, 0), x.Select(1, 3)}, 1), []int64{3, 2}, []float32{0, 3, 4, 7, 8, 11}},
		{"permute", x.Reshape(3, 2, 2).Permute(2, 0, 1), []int64{2, 3, 2}, []float32{0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11}},
		{"unsqueeze", x.Unsqueeze(0), []int64{1, 3, 4}, nil},
		{"flatten", x.Reshape(3, 2, 2).Flatten(1, -1), []int64{3, 4}, nil},
		{"sum", x.Sum(false, 1), []int64{3}, []float32{6, 22, 38}},
		{"mean", x.Mean(true, 0), []int64{1, 4}, []float32{4, 5, 6, 7}},
		{"max", x.Max(false, 1), []int64{3}, []float32{3, 7, 11}},
		{"expand", FromFloat32(s, []float32{1, 2}, 2, 1).Expand(2, 3), []int64{2, 3}, []float32{1, 1, 1, 2, 2, 2}},
	}
	for _, c := range cases {
		if err := c.t.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := c.t.Shape(); !reflect.DeepEqual(got, c.shape) {
			t.Errorf("%s: shape %v, want %v", c.name, got, c.shape)
		}
		if c.want != nil {
			got, err := c.t.Contiguous().Float32s()
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s: %v (%v), want %v", c.name, got, err, c.want)
			}
		}
	}
	am := must[[]int64](t)(x.Argmax(1, false).Int64s())
	if !reflect.DeepEqual(am, []int64{3, 3, 3}) {
		t.Errorf("argmax %v", am)
	}
	v, idx := FromFloat32(s, []float32{5, 1, 9, 3, 7}, 1, 5).TopK(3, 1, false)
	if got := must[[]float32](t)(v.Float32s()); !reflect.DeepEqual(got, []float32{1, 3, 5}) {
		t.Errorf("topk values %v", got)
	}
	if got := must[[]int64](t)(idx.Int64s()); !reflect.DeepEqual(got, []int64{1, 3, 0}) {
		t.Errorf("topk indices %v", got)
	}
}

func TestDistancesAndNormalize(t *testing.T) {
	s := NewScope()
	defer s.Close()
	a := FromFloat32(s, []float32{0, 0, 3, 4}, 2, 2)
	b := FromFloat32(s, []float32{0, 0, 1, 0, 3, 4}, 3, 2)
	d := must[[]float32](t)(SquaredDistances(a, b).Float32s())
	want := []float32{0, 1, 25, 25, 20, 0}
	for i := range want {
		if math.Abs(float64(d[i]-want[i])) > 1e-5 {
			t.Fatalf("sq dist %v, want %v", d, want)
		}
	}
	n := must[[]float32](t)(Normalize(a, 2, 1, 1e-12).Float32s())
	if math.Abs(float64(n[2])-0.6) > 1e-6 || math.Abs(float64(n[3])-0.8) > 1e-6 {
		t.Fatalf("normalize %v", n)
	}
	c := must[[]float32](t)(PairwiseCosine(a.Narrow(0, 1, 1), b.Narrow(0, 1, 2), 1e-8).Float32s())
	if math.Abs(float64(c[0])-0.6) > 1e-6 || math.Abs(float64(c[1])-1) > 1e-6 {
		t.Fatalf("cosine %v", c)
	}
}

// Bad arguments come back as errors carrying libtorch's message; nothing crashes.
func TestErrorsDoNotCrash(t *testing.T) {
	s := NewScope()
	defer s.Close()
	a := FromFloat32(s, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := FromFloat32(s, []float32{1, 2, 3, 4}, 2, 2)
	checks := []struct {
		name string
		t    *Tensor
		want string
	}{
		{"mm shape mismatch", a.Mm(b), "mat1 and mat2 shapes cannot be multiplied"},
		{"reshape", a.Reshape(4, 4), "invalid for input of size 6"},
		{"conv2d on 2-D input", Conv2d(a, b, nil, Conv2dOptions{}), "conv2d"},
		{"index out of range", a.IndexSelect(0, FromInt64(s, []int64{7}, 1)), "index"},
		{"index wrong dtype", a.IndexSelect(0, FromFloat32(s, []float32{0}, 1)), "index"},
		{"cross entropy bad target", CrossEntropy(a, FromInt64(s, []int64{0, 9}, 2), 0, ReduceMean), "out of bounds"},
		{"cat empty", Cat(nil, 0), "no tensors"},
		{"wrong data length", FromFloat32(s, []float32{1, 2, 3}, 2, 2), "do not fill"},
		{"topk k too large", firstOf(a.TopK(9, 1, true)), "selected index k out of range"},
		{"error propagates", a.Mm(b).Relu().Add(a), "mat1 and mat2"},
	}
	for _, c := range checks {
		err := c.t.Err()
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.want)
		}
	}
	if _, err := a.Int64s(); err == nil {
		t.Error("Int64s of a float32 tensor must fail")
	}
	if _, err := a.Item(); err == nil {
		t.Error("Item of a 6-element tensor must fail")
	}
	if _, err := ParseDevice("tpu"); err == nil {
		t.Error("unknown device accepted")
	}
	x := FromFloat32(nil, []float32{1}, 1)
	x.Free()
	x.Free() // idempotent
	if err := x.Relu().Err(); !errors.Is(err, ErrFreed) {
		t.Errorf("use after free: %v", err)
	}
}

func firstOf(a, _ *Tensor) *Tensor { return a }

func TestScopeFreesAndKeep(t *testing.T) {
	s := NewScope()
	x := FromFloat32(s, []float32{1, 2}, 2)
	y := x.MulScalar(2)
	kept := Keep(x.AddScalar(1))
	if s.Len() != 2 {
		t.Fatalf("scope owns %d, want 2", s.Len())
	}
	s.Close()
	if y.Err() == nil || x.Err() == nil {
		t.Fatal("scope did not free its tensors")
	}
	got := must[[]float32](t)(kept.Float32s())
	if !reflect.DeepEqual(got, []float32{2, 3}) {
		t.Fatalf("kept %v", got)
	}
	kept.Free()
	// Unscoped inputs give unscoped results.
	p := FromFloat32(nil, []float32{1}, 1)
	q := p.AddScalar(1)
	if q.Scope() != nil {
		t.Fatal("result of unscoped input has a scope")
	}
	p.Free()
	q.Free()
}

func TestThreadsAndSeed(t *testing.T) {
	prev := NumThreads()
	defer SetNumThreads(prev)
	SetNumThreads(2)
	if NumThreads() != 2 {
		t.Fatalf("threads %d after SetNumThreads(2)", NumThreads())
	}
	s := NewScope()
	defer s.Close()
	draw := func() []float32 {
		if err := ManualSeed(42); err != nil {
			t.Fatal(err)
		}
		return must[[]float32](t)(Randn(s, Float32, CPU, 5).Float32s())
	}
	if a, b := draw(), draw(); !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different draws: %v %v", a, b)
	}
	// RNG state round trip: the draw after restoring equals the draw after saving.
	ManualSeed(7)
	st := must[[]byte](t)(RNGState())
	a := must[[]float32](t)(Randn(s, Float32, CPU, 3).Float32s())
	if err := SetRNGState(st); err != nil {
		t.Fatal(err)
	}
	b := must[[]float32](t)(Randn(s, Float32, CPU, 3).Float32s())
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("rng state restore: %v vs %v", a, b)
	}
}

func TestLoadScriptErrors(t *testing.T) {
	if _, err := LoadScript("/nonexistent/model.pt", CPU); err == nil || !strings.Contains(err.Error(), "/nonexistent/model.pt") {
		t.Fatalf("missing file: %v", err)
	}
	bad := t.TempDir() + "/bad.pt"
	if err := os.WriteFile(bad, []byte("not a zip archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadScript(bad, CPU); err == nil {
		t.Fatal("garbage TorchScript file accepted")
	}
	if !CUDAAvailable() {
		if _, err := ParseDevice("cuda"); err == nil || !strings.Contains(err.Error(), "no CUDA") {
			t.Fatalf("cuda without CUDA: %v", err)
		}
	}
}

func TestEmptyTensors(t *testing.T) {
	s := NewScope()
	defer s.Close()
	e := FromFloat32(s, nil, 0, 4)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if got := e.Shape(); !reflect.DeepEqual(got, []int64{0, 4}) {
		t.Fatalf("shape %v", got)
	}
	v, err := e.Float32s()
	if err != nil || len(v) != 0 {
		t.Fatalf("values %v, %v", v, err)
	}
	u := FromInt64(nil, []int64{}, 0)
	u.Free()
	runtime.GC()
}

// TestInPlaceOps checks that relu_, leaky_relu_ and add_ change the tensor's own memory (a view
// of it sees the change) and that a mismatched add is an error, not a panic.
func TestInPlaceOps(t *testing.T) {
	s := NewScope()
	defer s.Close()
	x := FromFloat32(s, []float32{-2, -1, 0, 3}, 4)
	view := x.Narrow(0, 0, 4)
	if err := x.ReluInPlace(); err != nil {
		t.Fatal(err)
	}
	if got := must[[]float32](t)(view.Float32s()); !reflect.DeepEqual(got, []float32{0, 0, 0, 3}) {
		t.Fatalf("relu_: %v", got)
	}
	y := FromFloat32(s, []float32{-2, 4}, 2)
	if err := y.LeakyReluInPlace(); err != nil {
		t.Fatal(err)
	}
	if got := must[[]float32](t)(y.Float32s()); math.Abs(float64(got[0])+0.2) > 1e-7 || got[1] != 4 {
		t.Fatalf("leaky_relu_: %v, want [-0.2 4]", got)
	}
	if err := x.AddInPlace(FromFloat32(s, []float32{1, 1, 1, 1}, 4)); err != nil {
		t.Fatal(err)
	}
	if got := must[[]float32](t)(view.Float32s()); !reflect.DeepEqual(got, []float32{1, 1, 1, 4}) {
		t.Fatalf("add_: %v", got)
	}
	if err := x.AddInPlace(FromFloat32(s, []float32{1, 2, 3}, 3)); err == nil {
		t.Fatal("add_ of a 3-vector to a 4-vector: no error")
	}
}
