package nn

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"protoherb/torch"
)

func newModel(t *testing.T, cfg Config) *Model {
	t.Helper()
	if err := torch.ManualSeed(1); err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func forwardShape(t *testing.T, m *Model, n, c, size int64, train bool) []int64 {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	x := torch.Randn(s, torch.Float32, torch.CPU, n, c, size, size)
	y := m.Embed(x, train)
	if err := y.Err(); err != nil {
		t.Fatal(err)
	}
	return y.Shape()
}

func TestBackboneShapes(t *testing.T) {
	cases := []struct {
		cfg  Config
		size int64
		want int64
	}{
		{Config{Backbone: "conv4", InChannels: 1, ImageSize: 28}, 28, 64},
		{Config{Backbone: "conv4", InChannels: 3, ImageSize: 84}, 84, 1600},
		{Config{Backbone: "conv4", InChannels: 3, ImageSize: 84, ChannelsLast: true}, 84, 1600},
		{Config{Backbone: "resnet12", InChannels: 3}, 32, 640},
		{Config{Backbone: "resnet18", InChannels: 3}, 32, 512},
		{Config{Backbone: "resnet18", InChannels: 1, ChannelsLast: true}, 40, 512},
		{Config{Backbone: "resnet50", InChannels: 3}, 32, 2048},
		{Config{Backbone: "resnet18", InChannels: 3, EmbedDim: 128, L2Norm: true}, 32, 128},
		{Config{Backbone: "torchscript:testdata/tiny.pt", InChannels: 1, ImageSize: 8}, 8, 16},
	}
	for _, c := range cases {
		m := newModel(t, c.cfg)
		if m.EmbedDim() != int(c.want) {
			t.Errorf("%+v: EmbedDim %d, want %d", c.cfg, m.EmbedDim(), c.want)
		}
		for _, train := range []bool{true, false} {
			if got := forwardShape(t, m, 2, int64(c.cfg.InChannels), c.size, train); !slices.Equal(got, []int64{2, c.want}) {
				t.Errorf("%+v train=%v: shape %v, want [2 %d]", c.cfg, train, got, c.want)
			}
		}
		m.Close()
	}
}

func TestParameterCounts(t *testing.T) {
	for _, c := range []struct {
		name string
		want int64
	}{{"resnet18", 11_689_512}, {"resnet50", 25_557_032}} {
		m := newModel(t, Config{Backbone: c.name, InChannels: 3, NumClasses: 1000})
		if got := NumParams(m.Parameters()); got != c.want {
			t.Errorf("%s: %d parameters, torchvision has %d", c.name, got, c.want)
		}
		m.Close()
	}
	r12 := newModel(t, Config{Backbone: "resnet12", InChannels: 3})
	if got := NumParams(r12.Parameters()); got != 12_424_320 { // the "12.4M" of MetaOptNet/RFS ResNet-12
		t.Errorf("resnet12: %d parameters, want 12,424,320", got)
	}
	r12.Close()
	m := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28})
	// 4 convs (1→64, then 64→64, 3×3 with bias) + 4 batch norms (64 weights + 64 biases)
	want := int64((1*9+1)*64 + 3*(64*9+1)*64 + 4*128)
	if got := NumParams(m.Parameters()); got != want {
		t.Errorf("conv4: %d parameters, want %d", got, want)
	}
}

func TestNames(t *testing.T) {
	m := newModel(t, Config{Backbone: "resnet18", InChannels: 3, NumClasses: 10})
	names := map[string]bool{}
	for _, p := range m.State() {
		names[p.Name] = true
	}
	for _, n := range []string{"conv1.weight", "bn1.running_mean", "layer1.0.bn1.running_mean", "layer1.0.conv2.weight",
		"layer2.0.downsample.0.weight", "layer4.1.bn2.num_batches_tracked", "fc.weight", "fc.bias"} {
		if !names[n] {
			t.Errorf("resnet18 lacks %s", n)
		}
	}
	if len(names) != 122 { // torchvision resnet18 state_dict has 122 entries
		t.Errorf("resnet18 state has %d entries, torchvision 122", len(names))
	}
	c := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28, EmbedDim: 32, NumClasses: 5, Classifier: "cosine"})
	var got []string
	for _, p := range c.State() {
		got = append(got, p.Name)
	}
	want := []string{"encoder.0.0.weight", "encoder.0.0.bias", "encoder.0.1.weight", "encoder.0.1.bias",
		"encoder.0.1.running_mean", "encoder.0.1.running_var", "encoder.0.1.num_batches_tracked"}
	if !slices.Equal(got[:7], want) {
		t.Errorf("conv4 names start %v, want %v", got[:7], want)
	}
	if tail := got[len(got)-4:]; !slices.Equal(tail, []string{"embed.weight", "embed.bias", "fc.weight", "fc.scale"}) {
		t.Errorf("head names %v", tail)
	}
	for _, p := range c.Buffers() {
		if strings.HasSuffix(p.Name, "num_batches_tracked") && p.T.DType() != torch.Int64 {
			t.Errorf("%s is %v, want int64", p.Name, p.T.DType())
		}
	}
}

func TestBatchNormTracking(t *testing.T) {
	m := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28})
	forwardShape(t, m, 4, 1, 28, true)
	forwardShape(t, m, 4, 1, 28, true)
	forwardShape(t, m, 4, 1, 28, false)
	for _, p := range m.Buffers() {
		switch {
		case strings.HasSuffix(p.Name, "num_batches_tracked"):
			v, err := p.T.Item()
			if err != nil || v != 2 {
				t.Errorf("%s = %v (%v), want 2", p.Name, v, err)
			}
		case strings.HasSuffix(p.Name, "running_mean"):
			s := p.T.Abs().Sum(false)
			v, _ := s.Item()
			s.Free()
			if v == 0 {
				t.Errorf("%s not updated in training", p.Name)
			}
		}
	}
}

func TestLogits(t *testing.T) {
	for _, cls := range []string{"linear", "cosine"} {
		m := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28, NumClasses: 7, Classifier: cls})
		s := torch.NewScope()
		x := torch.Randn(s, torch.Float32, torch.CPU, 3, 1, 28, 28)
		y := m.Logits(x, true)
		if err := y.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(y.Shape(), []int64{3, 7}) {
			t.Errorf("%s logits shape %v", cls, y.Shape())
		}
		l := torch.CrossEntropy(y, torch.FromInt64(s, []int64{0, 1, 2}, 3), 0, torch.ReduceMean)
		if err := l.Backward(); err != nil {
			t.Fatal(err)
		}
		for _, p := range m.Parameters() {
			g := p.T.Grad()
			if g == nil {
				t.Errorf("%s %s: no gradient", cls, p.Name)
			}
			g.Free()
		}
		s.Close()
	}
	m := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28})
	if m.Logits(torch.Zeros(nil, torch.Float32, torch.CPU, 1, 1, 28, 28), false).Err() == nil {
		t.Error("Logits without a classifier: no error")
	}
}

func TestUnscopedForwardFrees(t *testing.T) {
	// A forward on an unscoped input leaves only its result: intermediates are freed as they go.
	m := newModel(t, Config{Backbone: "resnet18", InChannels: 3, EmbedDim: 8, L2Norm: true})
	x := torch.Randn(nil, torch.Float32, torch.CPU, 1, 3, 32, 32)
	defer x.Free()
	y := m.Embed(x, false)
	defer y.Free()
	if err := y.Err(); err != nil {
		t.Fatal(err)
	}
	if x.Err() != nil {
		t.Fatal("the caller's input was freed")
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Backbone: "vgg"},
		{Backbone: "conv4", ImageSize: 8},
		{Backbone: "conv4", ImageSize: 28, Classifier: "arcface", NumClasses: 3},
		{Backbone: "torchscript:testdata/missing.pt", ImageSize: 8},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

// TestForwardFreesIntermediates: a forward leaves only its output in the caller's scope (so an
// inference pass holds a couple of activations at a time, not all of them), and training still works.
func TestForwardFreesIntermediates(t *testing.T) {
	for _, name := range []string{"conv4", "resnet12", "resnet18", "resnet50"} {
		m := newModel(t, Config{Backbone: name, InChannels: 3, ImageSize: 32, EmbedDim: 8, L2Norm: true, NumClasses: 2, Classifier: "cosine"})
		s := torch.NewScope()
		x := torch.Randn(s, torch.Float32, torch.CPU, 2, 3, 32, 32)
		var y *torch.Tensor
		torch.NoGrad(func() { y = m.Embed(x, false) })
		if err := y.Err(); err != nil {
			t.Fatal(err)
		}
		if s.Len() != 2 {
			t.Errorf("%s: scope holds %d tensors after an eval forward, want 2 (input and output)", name, s.Len())
		}
		l := m.Logits(x, true)
		if s.Len() != 3 {
			t.Errorf("%s: scope holds %d tensors after a training forward, want 3", name, s.Len())
		}
		if err := l.Sum(false).Backward(); err != nil {
			t.Fatalf("%s: backward after early frees: %v", name, err)
		}
		s.Close()
		m.Close()
	}
}

// backboneCase is one built-in backbone at an input size and memory format, with a 3-class head.
type backboneCase struct {
	backbone string
	size     int
	cl       bool
}

func (c backboneCase) name() string { return fmt.Sprintf("%s-cl%v", c.backbone, c.cl) }

func (c backboneCase) config() Config {
	return Config{Backbone: c.backbone, InChannels: 3, ImageSize: c.size, NumClasses: 3, ChannelsLast: c.cl}
}

// TestInPlaceInference checks the in-place activations and residual sums used when no gradient is
// recorded: the embeddings under NoGrad equal those of the same eval forward with gradients on
// (new tensors at every layer) to the bit, the input is left as it was, and a training step with
// gradients on still runs backward (no saved value was overwritten).
func TestInPlaceInference(t *testing.T) {
	for _, c := range []backboneCase{{"conv4", 28, false}, {"conv4", 28, true}, {"resnet12", 32, false}, {"resnet18", 32, false}, {"resnet50", 32, true}} {
		t.Run(c.name(), func(t *testing.T) {
			m := newModel(t, c.config())
			s := torch.NewScope()
			defer s.Close()
			x := torch.Randn(s, torch.Float32, torch.CPU, 2, 3, int64(c.size), int64(c.size))
			before := host(t, x)
			withGrad := host(t, m.Embed(x, false))
			var inPlace []float32
			torch.NoGrad(func() { inPlace = host(t, m.Embed(x, false)) })
			if !reflect.DeepEqual(withGrad, inPlace) {
				worst := 0.0
				for i := range withGrad {
					worst = max(worst, math.Abs(float64(withGrad[i]-inPlace[i])))
				}
				t.Fatalf("embeddings under NoGrad differ from those with gradients on by up to %g", worst)
			}
			if !reflect.DeepEqual(before, host(t, x)) {
				t.Fatalf("the forward pass under NoGrad changed its input")
			}
			loss := m.Logits(x, true).Sum(false)
			if err := loss.Backward(); err != nil {
				t.Fatalf("backward after in-place inference: %v", err)
			}
		})
	}
}
