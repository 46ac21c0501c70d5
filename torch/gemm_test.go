package torch

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// gemmRef is alpha·a·bᵀ in float64, a [m, k] and b [n, k] row-major.
func gemmRef(a, b []float32, m, n, k int, alpha float64) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for t := range k {
				s += float64(a[i*k+t]) * float64(b[j*k+t])
			}
			out[i*n+j] = alpha * s
		}
	}
	return out
}

func randFloats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// TestGemmNT checks GemmNT against a float64 product on contiguous matrices, on row views with
// a larger row stride (the search's prototype tiles are narrowed rows of one matrix; its output
// tiles are views of a flat buffer), and on a transposed view, which takes the addmm path.
func TestGemmNT(t *testing.T) {
	t.Logf("engine: %s", GemmEngine())
	s := NewScope()
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	const m, n, k = 37, 53, 70
	a, b := randFloats(r, m*k), randFloats(r, n*k)
	check := func(name string, out *Tensor, want []float64) {
		t.Helper()
		got, err := out.Contiguous().Float32s()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range want {
			if d := math.Abs(float64(got[i]) - want[i]); d > 1e-4*(1+math.Abs(want[i])) {
				t.Fatalf("%s: element %d = %g, want %g", name, i, got[i], want[i])
			}
		}
	}
	want := gemmRef(a, b, m, n, k, -2)

	out := Zeros(s, Float32, CPU, m, n)
	if err := GemmNT(out, FromFloat32(s, a, m, k), FromFloat32(s, b, n, k), -2); err != nil {
		t.Fatal(err)
	}
	check("contiguous", out, want)

	// Rows 3..3+n of a taller prototype matrix, and columns 0..k of wider ones: row stride > k.
	wide := func(v []float32, rows int) *Tensor {
		w := make([]float32, (rows+6)*(k+5))
		for i := range rows {
			copy(w[(i+3)*(k+5):], v[i*k:(i+1)*k])
		}
		return FromFloat32(s, w, int64(rows+6), k+5).Narrow(0, 3, int64(rows)).Narrow(1, 0, k)
	}
	big := Zeros(s, Float32, CPU, m, n+9)
	outView := big.Narrow(1, 4, n)
	if err := GemmNT(outView, wide(a, m), wide(b, n), -2); err != nil {
		t.Fatal(err)
	}
	check("strided rows", outView, want)

	// b given as the transpose of a [k, n] matrix: its rows are not contiguous.
	bt := FromFloat32(s, b, n, k).T().Contiguous().T()
	out2 := Zeros(s, Float32, CPU, m, n)
	if err := GemmNT(out2, FromFloat32(s, a, m, k), bt, -2); err != nil {
		t.Fatal(err)
	}
	check("transposed b", out2, want)

	err := GemmNT(Zeros(s, Float32, CPU, m, n+1), FromFloat32(s, a, m, k), FromFloat32(s, b, n, k), 1)
	if err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("mismatched shapes: err = %v, want one saying the shapes do not match", err)
	}
}
