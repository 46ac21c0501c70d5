package torch

import (
	"bufio"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// conv4 is the prototypical-networks encoder written directly on the binding, to show that the ops,
// autograd and optimizers together learn (package nn holds the real one).
type conv4 struct {
	w, b, gamma, beta, rm, rv []*Tensor
}

func newConv4(inC int64) *conv4 {
	c := &conv4{}
	prev := inC
	for i := 0; i < 4; i++ {
		fan := float64(prev * 9)
		w := Randn(nil, Float32, CPU, 64, prev, 3, 3)
		wScaled := w.MulScalar(math.Sqrt(2 / fan))
		w.Free()
		c.w = append(c.w, wScaled.SetRequiresGrad(true))
		c.b = append(c.b, Zeros(nil, Float32, CPU, 64).SetRequiresGrad(true))
		c.gamma = append(c.gamma, Ones(nil, Float32, CPU, 64).SetRequiresGrad(true))
		c.beta = append(c.beta, Zeros(nil, Float32, CPU, 64).SetRequiresGrad(true))
		c.rm = append(c.rm, Zeros(nil, Float32, CPU, 64))
		c.rv = append(c.rv, Ones(nil, Float32, CPU, 64))
		prev = 64
	}
	return c
}

func (c *conv4) params() []*Tensor {
	var ps []*Tensor
	for i := range c.w {
		ps = append(ps, c.w[i], c.b[i], c.gamma[i], c.beta[i])
	}
	return ps
}

func (c *conv4) free() {
	for _, t := range append(c.params(), append(c.rm, c.rv...)...) {
		t.Free()
	}
}

func (c *conv4) forward(x *Tensor, train bool) *Tensor {
	for i := range c.w {
		x = Conv2d(x, c.w[i], c.b[i], Conv2dOptions{Padding: [2]int64{1, 1}})
		x = BatchNorm(x, c.gamma[i], c.beta[i], c.rm[i], c.rv[i], train, 0.1, 1e-5)
		x = MaxPool2d(x.Relu(), 2, 2, 0, false)
	}
	return x.Flatten(1, -1)
}

// synthetic makes 28×28 images of 5 classes: a bright bar at one of five orientations/positions,
// on noise, with random shifts.
func synthetic(r *rand.Rand, n int) ([]float32, []int64) {
	x := make([]float32, n*28*28)
	y := make([]int64, n)
	for i := 0; i < n; i++ {
		c := r.IntN(5)
		y[i] = int64(c)
		img := x[i*784 : (i+1)*784]
		for j := range img {
			img[j] = float32(r.NormFloat64() * 0.3)
		}
		dx, dy := r.IntN(5)-2, r.IntN(5)-2
		for k := 4; k < 24; k++ {
			var px, py int
			switch c {
			case 0:
				px, py = k, 14
			case 1:
				px, py = 14, k
			case 2:
				px, py = k, k
			case 3:
				px, py = k, 27-k
			case 4:
				px, py = k, 6
			}
			px, py = px+dx, py+dy
			if px >= 0 && px < 28 && py >= 0 && py < 28 {
				img[py*28+px] += 2
			}
		}
	}
	return x, y
}

func TestConv4LearnsSyntheticProblem(t *testing.T) {
	ManualSeed(1)
	r := rand.New(rand.NewPCG(1, 2))
	net := newConv4(1)
	defer net.free()
	head := Randn(nil, Float32, CPU, 5, 64)
	headW := head.MulScalar(0.1).SetRequiresGrad(true)
	head.Free()
	defer headW.Free()
	opt, err := NewAdam(append(net.params(), headW), AdamOptions{LR: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	s := NewScope()
	defer s.Close()
	for step := 0; step < 150; step++ {
		xs, ys := synthetic(r, 32)
		x := FromFloat32(s, xs, 32, 1, 28, 28)
		logits := Linear(net.forward(x, true), headW, nil)
		loss := CrossEntropy(logits, FromInt64(s, ys, 32), 0, ReduceMean)
		opt.ZeroGrad()
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		s.Reset()
	}
	xs, ys := synthetic(r, 500)
	var pred []int64
	NoGrad(func() {
		x := FromFloat32(s, xs, 500, 1, 28, 28)
		pred, err = Linear(net.forward(x, false), headW, nil).Argmax(1, false).Int64s()
	})
	if err != nil {
		t.Fatal(err)
	}
	correct := 0
	for i := range pred {
		if pred[i] == ys[i] {
			correct++
		}
	}
	acc := float64(correct) / float64(len(pred))
	t.Logf("Conv-4 accuracy on held-out synthetic data: %.3f", acc)
	if acc <= 0.95 {
		t.Fatalf("accuracy %.3f, want > 0.95", acc)
	}
}

func rssKB(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return v
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// A training loop whose steps run in a reset scope keeps its memory flat.
func TestTrainingLoopMemoryIsFlat(t *testing.T) {
	w := Randn(nil, Float32, CPU, 64, 256).SetRequiresGrad(true)
	defer w.Free()
	opt, err := NewAdam([]*Tensor{w}, AdamOptions{LR: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	s := NewScope()
	defer s.Close()
	x := make([]float32, 128*256)
	y := make([]int64, 128)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	for i := range y {
		y[i] = int64(i % 64)
	}
	step := func() {
		xt := FromFloat32(s, x, 128, 256)
		loss := CrossEntropy(Linear(xt, w, nil).Relu(), FromInt64(s, y, 128), 0.1, ReduceMean)
		opt.ZeroGrad()
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		opt.Step()
		s.Reset()
	}
	var after200 int64
	for i := 1; i <= 2000; i++ {
		step()
		if i == 200 {
			runtime.GC()
			after200 = rssKB(t)
		}
	}
	runtime.GC()
	after2000 := rssKB(t)
	t.Logf("RSS after 200 steps %d kB, after 2000 steps %d kB", after200, after2000)
	if float64(after2000) > 1.1*float64(after200) {
		t.Fatalf("RSS grew from %d kB to %d kB over 1800 steps", after200, after2000)
	}
}
