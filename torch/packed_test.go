package torch

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestPackedConv checks PackConv2d's convolutions against Conv2d (and Conv2d then Relu): NCHW and
// channels-last input, stride 2, groups, no bias, and input of another batch and image size than the
// one the weight was packed for. It fails, rather than skips, where the libtorch that package torch
// links (Debian's 1.13 or a pip wheel on x86) lacks the operators, so that inference does not fall
// back to the slower path unnoticed.
func TestPackedConv(t *testing.T) {
	if !PrepackAvailable() {
		t.Fatal("PrepackAvailable: the linked libtorch has no mkldnn_prepacked operators")
	}
	s := NewScope()
	defer s.Close()
	r := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name         string
		in, out, k   int64
		opts         Conv2dOptions
		bias, relu   bool
		channelsLast bool
	}{
		{"3x3 pad 1 relu", 3, 16, 3, Conv2dOptions{Padding: [2]int64{1, 1}}, true, true, false},
		{"3x3 channels-last relu", 8, 16, 3, Conv2dOptions{Padding: [2]int64{1, 1}}, true, true, true},
		{"1x1 stride 2 no bias", 8, 12, 1, Conv2dOptions{Stride: [2]int64{2, 2}}, false, false, true},
		{"7x7 stride 2 pad 3", 3, 8, 7, Conv2dOptions{Stride: [2]int64{2, 2}, Padding: [2]int64{3, 3}}, true, false, false},
		{"groups 2", 8, 8, 3, Conv2dOptions{Padding: [2]int64{1, 1}, Groups: 2}, true, true, true},
	}
	for _, c := range cases {
		groups := max(c.opts.Groups, 1)
		w := FromFloat32(s, randFloats(r, int(c.out*c.in/groups*c.k*c.k)), c.out, c.in/groups, c.k, c.k)
		var b *Tensor
		if c.bias {
			b = FromFloat32(s, randFloats(r, int(c.out)), c.out)
		}
		input := func(n, hw int64) *Tensor {
			x := FromFloat32(s, randFloats(r, int(n*c.in*hw*hw)), n, c.in, hw, hw)
			if c.channelsLast {
				x = x.ChannelsLast()
			}
			return x
		}
		p, err := PackConv2d(w, b, c.opts, input(4, 12), c.relu)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, shape := range [][2]int64{{4, 12}, {1, 12}, {3, 9}} {
			x := input(shape[0], shape[1])
			want := Conv2d(x, w, b, c.opts)
			if c.relu {
				want = want.Relu()
			}
			got := p.Forward(x)
			closeTensors(t, c.name, got, want)
		}
		p.Free()
		p.Free()
		if err := p.Forward(input(1, 12)).Err(); err == nil || !strings.Contains(err.Error(), "after Free") {
			t.Errorf("%s: Forward after Free: err = %v, want one saying it was freed", c.name, err)
		}
	}
}

// closeTensors fails t unless got and want have one shape and agree to float32 rounding.
func closeTensors(t *testing.T, name string, got, want *Tensor) {
	t.Helper()
	g, err := got.Contiguous().Float32s()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	w, err := want.Contiguous().Float32s()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if gs, ws := got.Shape(), want.Shape(); len(g) != len(w) || len(gs) != len(ws) {
		t.Fatalf("%s: shape %v, want %v", name, gs, ws)
	}
	for i := range w {
		if d := math.Abs(float64(g[i] - w[i])); d > 1e-4*(1+math.Abs(float64(w[i]))) {
			t.Fatalf("%s: element %d = %g, want %g", name, i, g[i], w[i])
		}
	}
}

// TestPackConv2dErrors checks that what cannot be packed is refused with an error, not a crash.
func TestPackConv2dErrors(t *testing.T) {
	s := NewScope()
	defer s.Close()
	w := Zeros(s, Float32, CPU, 4, 3, 3, 3)
	if _, err := PackConv2d(w, nil, Conv2dOptions{}, Zeros(s, Float32, CPU, 3, 8), false); err == nil {
		t.Error("2-D input: no error")
	}
	if _, err := PackConv2d(Zeros(s, Float64, CPU, 4, 3, 3, 3), nil, Conv2dOptions{}, Zeros(s, Float32, CPU, 1, 3, 8, 8), false); err == nil {
		t.Error("float64 weight: no error")
	}
	p, err := PackConv2d(w, nil, Conv2dOptions{}, Zeros(s, Float32, CPU, 1, 3, 8, 8), false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	if err := p.Forward(Zeros(s, Float32, CPU, 1, 5, 8, 8)).Err(); err == nil {
		t.Error("input with 5 channels for a 3-channel weight: no error")
	}
}
