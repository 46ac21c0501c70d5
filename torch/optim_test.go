package torch

import (
	"math"
	"testing"
)

// Two parameters, loss = 0.5·(3a)² + b³ with a = 1, b = 2: gradients 9a and 3b².
func twoParamSteps(t *testing.T, mk func(ps []*Tensor) (*Optimizer, error), steps int) (a, b []float64) {
	t.Helper()
	pa := FromFloat64(nil, []float64{1}, 1).SetRequiresGrad(true)
	pb := FromFloat64(nil, []float64{2}, 1).SetRequiresGrad(true)
	defer pa.Free()
	defer pb.Free()
	opt, err := mk([]*Tensor{pa, pb})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	for i := 0; i < steps; i++ {
		s := NewScope()
		if err := opt.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		loss := pa.MulScalar(3).Square().MulScalar(0.5).Add(pb.PowScalar(3))
		Keep(loss) // unscoped inputs: free by hand
		if err := loss.Sum(false).Backward(); err != nil {
			t.Fatal(err)
		}
		loss.Free()
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		av, _ := pa.Item()
		bv, _ := pb.Item()
		a, b = append(a, av), append(b, bv)
	}
	return a, b
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
		t.Errorf("%s: got %.15g, want %.15g", what, got, want)
	}
}

func TestSGDMomentumMatchesHandComputed(t *testing.T) {
	lr, mu, wd := 0.01, 0.9, 0.1
	for _, nesterov := range []bool{false, true} {
		a, b := twoParamSteps(t, func(ps []*Tensor) (*Optimizer, error) {
			return NewSGD(ps, SGDOptions{LR: lr, Momentum: mu, WeightDecay: wd, Nesterov: nesterov})
		}, 3)
		// PyTorch: g += wd·p; buf = g (first step) else mu·buf + g; step = g + mu·buf (nesterov) or buf.
		x := []float64{1, 2}
		buf := []float64{0, 0}
		for s := 0; s < 3; s++ {
			g := []float64{9*x[0] + wd*x[0], 3*x[1]*x[1] + wd*x[1]}
			for i := range x {
				if s == 0 {
					buf[i] = g[i]
				} else {
					buf[i] = mu*buf[i] + g[i]
				}
				d := buf[i]
				if nesterov {
					d = g[i] + mu*buf[i]
				}
				x[i] -= lr * d
			}
			near(t, "sgd a", a[s], x[0])
			near(t, "sgd b", b[s], x[1])
		}
	}
}

func TestAdamMatchesHandComputed(t *testing.T) {
	lr, b1, b2, eps, wd := 0.1, 0.9, 0.999, 1e-8, 0.01
	for _, decoupled := range []bool{false, true} {
		a, b := twoParamSteps(t, func(ps []*Tensor) (*Optimizer, error) {
			o := AdamOptions{LR: lr, Beta1: b1, Beta2: b2, Eps: eps, WeightDecay: wd}
			if decoupled {
				return NewAdamW(ps, o)
			}
			return NewAdam(ps, o)
		}, 4)
		x := []float64{1, 2}
		m := []float64{0, 0}
		v := []float64{0, 0}
		for s := 1; s <= 4; s++ {
			g := []float64{9 * x[0], 3 * x[1] * x[1]}
			for i := range x {
				if decoupled {
					x[i] *= 1 - lr*wd
				} else {
					g[i] += wd * x[i]
				}
				m[i] = b1*m[i] + (1-b1)*g[i]
				v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
				bc1 := 1 - math.Pow(b1, float64(s))
				bc2 := 1 - math.Pow(b2, float64(s))
				x[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + eps)
			}
			near(t, "adam a", a[s-1], x[0])
			near(t, "adam b", b[s-1], x[1])
		}
	}
}

// Saving the optimizer state and loading it into a fresh optimizer continues exactly.
func TestOptimizerStateRoundTrip(t *testing.T) {
	run := func(split bool) float64 {
		p := FromFloat64(nil, []float64{1.5}, 1).SetRequiresGrad(true)
		defer p.Free()
		opt, err := NewAdam([]*Tensor{p}, AdamOptions{LR: 0.05})
		if err != nil {
			t.Fatal(err)
		}
		step := func(o *Optimizer) {
			o.ZeroGrad()
			l := p.PowScalar(4)
			if err := l.Sum(false).Backward(); err != nil {
				t.Fatal(err)
			}
			l.Free()
			if err := o.Step(); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 3; i++ {
			step(opt)
		}
		if split {
			st, err := opt.State()
			if err != nil {
				t.Fatal(err)
			}
			opt.Close()
			opt, err = NewAdam([]*Tensor{p}, AdamOptions{LR: 0.05})
			if err != nil {
				t.Fatal(err)
			}
			if err := opt.LoadState(st); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 3; i++ {
			step(opt)
		}
		opt.Close()
		v, _ := p.Item()
		return v
	}
	if a, b := run(false), run(true); a != b {
		t.Fatalf("resumed optimizer diverged: %v vs %v", a, b)
	}
	p := FromFloat64(nil, []float64{1}, 1).SetRequiresGrad(true)
	defer p.Free()
	opt, _ := NewSGD([]*Tensor{p}, SGDOptions{LR: 0.1})
	defer opt.Close()
	if err := opt.LoadState([]byte("not an archive")); err == nil {
		t.Fatal("garbage optimizer state accepted")
	}
	if err := opt.SetLR(0.02); err != nil || opt.LR() != 0.02 {
		t.Fatalf("SetLR: %v, lr %v", err, opt.LR())
	}
}
