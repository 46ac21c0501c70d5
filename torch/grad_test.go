package torch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gradCheck compares autograd's gradient of sum(f(inputs)·w) (w a fixed random weighting, so every
// output element matters) with central finite differences, in float64.
func gradCheck(t *testing.T, name string, shapes [][]int64, f func(s *Scope, in []*Tensor) *Tensor) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, uint64(len(name))))
	vals := make([][]float64, len(shapes))
	for i, sh := range shapes {
		n := int64(1)
		for _, d := range sh {
			n *= d
		}
		vals[i] = make([]float64, n)
		for j := range vals[i] {
			vals[i][j] = r.Float64()*1.6 + 0.2 // positive, away from kinks at 0 for relu/sqrt/log
			if r.IntN(2) == 0 && name != "sqrt" && name != "log" && name != "pow" {
				vals[i][j] = -vals[i][j]
			}
		}
	}
	var weights []float64
	eval := func(s *Scope, in []*Tensor) *Tensor {
		out := f(s, in)
		if out.Err() != nil {
			return out
		}
		if weights == nil {
			weights = make([]float64, out.Numel())
			for i := range weights {
				weights[i] = r.Float64()*2 - 1
			}
		}
		w := FromFloat64(s, weights, out.Shape()...)
		return out.Mul(w).Sum(false)
	}
	s := NewScope()
	defer s.Close()
	ins := make([]*Tensor, len(shapes))
	for i := range shapes {
		ins[i] = FromFloat64(s, vals[i], shapes[i]...).SetRequiresGrad(true)
	}
	loss := eval(s, ins)
	if err := loss.Backward(); err != nil {
		t.Fatalf("%s: backward: %v", name, err)
	}
	const h = 1e-6
	for i := range ins {
		g := ins[i].Grad()
		if g == nil {
			t.Fatalf("%s: input %d has no gradient", name, i)
		}
		analytic, err := g.Float64s()
		g.Free()
		if err != nil {
			t.Fatal(err)
		}
		for j := range vals[i] {
			num := func(delta float64) float64 {
				ss := NewScope()
				defer ss.Close()
				cp := make([]*Tensor, len(ins))
				for k := range ins {
					v := append([]float64(nil), vals[k]...)
					if k == i {
						v[j] += delta
					}
					cp[k] = FromFloat64(ss, v, shapes[k]...)
				}
				var out float64
				NoGrad(func() { out, err = eval(ss, cp).Item() })
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			numeric := (num(h) - num(-h)) / (2 * h)
			if diff := math.Abs(numeric - analytic[j]); diff > 1e-5*math.Max(1, math.Abs(numeric)) {
				t.Errorf("%s: d/dx%d[%d]: autograd %.8g, finite differences %.8g", name, i, j, analytic[j], numeric)
				return
			}
		}
	}
}

func TestGradients(t *testing.T) {
	type tc struct {
		name   string
		shapes [][]int64
		f      func(s *Scope, in []*Tensor) *Tensor
	}
	labels := func(s *Scope) *Tensor { return FromInt64(s, []int64{2, 0, 1}, 3) }
	cases := []tc{
		{"conv2d", [][]int64{{2, 2, 5, 5}, {3, 2, 3, 3}, {3}}, func(s *Scope, in []*Tensor) *Tensor {
			return Conv2d(in[0], in[1], in[2], Conv2dOptions{Stride: [2]int64{2, 1}, Padding: [2]int64{1, 1}})
		}},
		{"conv2d groups", [][]int64{{1, 4, 4, 4}, {4, 2, 3, 3}}, func(s *Scope, in []*Tensor) *Tensor {
			return Conv2d(in[0], in[1], nil, Conv2dOptions{Padding: [2]int64{1, 1}, Groups: 2})
		}},
		{"batch_norm train", [][]int64{{4, 3, 2, 2}, {3}, {3}}, func(s *Scope, in []*Tensor) *Tensor {
			rm, rv := Zeros(s, Float64, CPU, 3), Ones(s, Float64, CPU, 3)
			return BatchNorm(in[0], in[1], in[2], rm, rv, true, 0.1, 1e-5)
		}},
		{"batch_norm eval", [][]int64{{4, 3, 2, 2}, {3}, {3}}, func(s *Scope, in []*Tensor) *Tensor {
			rm := FromFloat64(s, []float64{0.1, -0.2, 0.3}, 3)
			rv := FromFloat64(s, []float64{1.5, 0.5, 2}, 3)
			return BatchNorm(in[0], in[1], in[2], rm, rv, false, 0.1, 1e-5)
		}},
		{"relu", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Relu() }},
		{"max_pool2d", [][]int64{{1, 2, 4, 4}}, func(s *Scope, in []*Tensor) *Tensor { return MaxPool2d(in[0], 2, 0, 0, false) }},
		{"avg_pool2d", [][]int64{{1, 2, 4, 4}}, func(s *Scope, in []*Tensor) *Tensor { return AvgPool2d(in[0], 2, 2, 0) }},
		{"adaptive_avg_pool2d", [][]int64{{2, 2, 5, 3}}, func(s *Scope, in []*Tensor) *Tensor { return AdaptiveAvgPool2d(in[0], 2, 1) }},
		{"linear", [][]int64{{3, 4}, {2, 4}, {2}}, func(s *Scope, in []*Tensor) *Tensor { return Linear(in[0], in[1], in[2]) }},
		{"matmul", [][]int64{{2, 3, 4}, {4, 2}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Matmul(in[1]) }},
		{"addmm", [][]int64{{3}, {2, 4}, {4, 3}}, func(s *Scope, in []*Tensor) *Tensor { return Addmm(in[0], in[1], in[2], 0.5, -2) }},
		{"add mul", [][]int64{{3, 1}, {1, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Add(in[1]).Mul(in[1]) }},
		{"sub div", [][]int64{{3, 4}, {3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Sub(in[1]).Div(in[1].Square().AddScalar(1)) }},
		{"sum mean", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Sum(true, 1).Add(in[0].Mean(false, 0)) }},
		{"pow", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].PowScalar(3) }},
		{"sqrt", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Sqrt() }},
		{"exp", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Exp() }},
		{"log", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Log() }},
		{"log_softmax", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].LogSoftmax(1) }},
		{"softmax", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return in[0].Softmax(0) }},
		{"cross_entropy", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor {
			return CrossEntropy(in[0], labels(s), 0, ReduceMean)
		}},
		{"cross_entropy smoothing", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor {
			return CrossEntropy(in[0], labels(s), 0.1, ReduceSum)
		}},
		{"nll_loss", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor {
			return NLLLoss(in[0].LogSoftmax(1), labels(s), ReduceNone)
		}},
		{"squared distances", [][]int64{{3, 4}, {5, 4}}, func(s *Scope, in []*Tensor) *Tensor { return SquaredDistances(in[0], in[1]) }},
		{"cosine similarity", [][]int64{{3, 4}, {3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return CosineSimilarity(in[0], in[1], 1, 1e-8) }},
		{"pairwise cosine", [][]int64{{3, 4}, {2, 4}}, func(s *Scope, in []*Tensor) *Tensor { return PairwiseCosine(in[0], in[1], 1e-8) }},
		{"normalize", [][]int64{{3, 4}}, func(s *Scope, in []*Tensor) *Tensor { return Normalize(in[0], 2, 1, 1e-12) }},
		{"shape ops", [][]int64{{2, 3, 4}}, func(s *Scope, in []*Tensor) *Tensor {
			x := in[0].Permute(2, 0, 1).Reshape(4, 6)
			return Cat([]*Tensor{x.Narrow(1, 1, 3), x.IndexSelect(1, FromInt64(s, []int64{5, 0}, 2))}, 1)
		}},
		{"stack", [][]int64{{2, 3}, {2, 3}}, func(s *Scope, in []*Tensor) *Tensor { return Stack(in, 0).Select(1, 1) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { gradCheck(t, c.name, c.shapes, c.f) })
	}
}

// Dropout's gradient is its mask scaled by 1/(1-p): check it exactly rather than by finite differences.
func TestDropoutGradient(t *testing.T) {
	s := NewScope()
	defer s.Close()
	ManualSeed(3)
	x := Ones(s, Float64, CPU, 1000).SetRequiresGrad(true)
	y := Dropout(x, 0.25, true)
	if err := y.Sum(false).Backward(); err != nil {
		t.Fatal(err)
	}
	out := must[[]float64](t)(y.Float64s())
	g := x.Grad()
	defer g.Free()
	grad := must[[]float64](t)(g.Float64s())
	zeros := 0
	for i := range out {
		if out[i] != grad[i] || (out[i] != 0 && math.Abs(out[i]-1/0.75) > 1e-12) {
			t.Fatalf("element %d: out %v grad %v", i, out[i], grad[i])
		}
		if out[i] == 0 {
			zeros++
		}
	}
	if zeros < 180 || zeros > 320 {
		t.Fatalf("%d of 1000 dropped, want about 250", zeros)
	}
	ev := must[[]float64](t)(Dropout(x, 0.25, false).Float64s())
	for _, v := range ev {
		if v != 1 {
			t.Fatal("dropout in eval mode changed values")
		}
	}
}

func TestNoGradAndZeroGrad(t *testing.T) {
	s := NewScope()
	defer s.Close()
	w := FromFloat32(s, []float32{2}, 1).SetRequiresGrad(true)
	var y *Tensor
	NoGrad(func() { y = w.MulScalar(3) })
	if y.RequiresGrad() {
		t.Fatal("result inside NoGrad requires grad")
	}
	if w.MulScalar(3).RequiresGrad() != true {
		t.Fatal("grad mode not restored after NoGrad")
	}
	if err := w.MulScalar(3).Sum(false).Backward(); err != nil {
		t.Fatal(err)
	}
	g := w.Grad()
	if v := must[float64](t)(g.Item()); v != 3 {
		t.Fatalf("grad %v", v)
	}
	g.Free()
	if err := w.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	if w.Grad() != nil {
		t.Fatal("gradient survived ZeroGrad")
	}
	if err := y.Backward(); err == nil {
		t.Fatal("backward through a no-grad result must fail")
	} else if fmt.Sprint(err) == "" {
		t.Fatal("empty error")
	}
}
