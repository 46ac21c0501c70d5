package nn

import (
	"fmt"
	"math"
	"reflect"
	"testing"

	"protoherb/torch"
)

// TestFoldBatchNorm checks that folding the batch norms into the convolutions changes inference
// embeddings by float32 rounding only, on running statistics that are not the identity, and leaves
// everything else alone: a training forward and an eval forward with gradients on give the same
// values as before folding.
func TestFoldBatchNorm(t *testing.T) {
	for _, c := range []struct {
		backbone string
		size     int
		cl       bool
	}{{"conv4", 28, false}, {"conv4", 28, true}, {"resnet12", 32, false}, {"resnet18", 32, true}, {"resnet50", 32, false}} {
		t.Run(fmt.Sprintf("%s-cl%v", c.backbone, c.cl), func(t *testing.T) {
			m := newModel(t, Config{Backbone: c.backbone, InChannels: 3, ImageSize: c.size, NumClasses: 3, ChannelsLast: c.cl})
			s := torch.NewScope()
			defer s.Close()
			x := torch.Randn(s, torch.Float32, torch.CPU, 4, 3, int64(c.size), int64(c.size))
			floats := func(y *torch.Tensor) []float32 {
				t.Helper()
				v, err := y.Float32s()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			// Training-mode passes move the running statistics away from mean 0, variance 1.
			torch.NoGrad(func() {
				for range 3 {
					x2 := x.MulScalar(3).AddScalar(0.5)
					m.Embed(x2, true).Free()
					x2.Free()
				}
			})
			var plain, folded []float32
			torch.NoGrad(func() { plain = floats(m.Embed(x, false)) })
			withGrad := floats(m.Embed(x, false))
			if err := m.FoldBatchNorm(); err != nil {
				t.Fatal(err)
			}
			torch.NoGrad(func() { folded = floats(m.Embed(x, false)) })
			var big, worst float64
			for i := range plain {
				big = max(big, math.Abs(float64(plain[i])))
				worst = max(worst, math.Abs(float64(plain[i]-folded[i])))
			}
			if worst > 1e-4*big || math.IsNaN(worst) {
				t.Fatalf("folded embeddings differ by %g (largest value %g)", worst, big)
			}
			if reflect.DeepEqual(plain, folded) {
				t.Logf("folded embeddings equal to the bit")
			}
			if got := floats(m.Embed(x, false)); !reflect.DeepEqual(got, withGrad) {
				t.Fatalf("with gradients on, the eval forward changed after folding")
			}
			// A training-mode pass, even under NoGrad, uses batch statistics: never the folded weights.
			// A fresh model with the same seed has the same weights (running statistics do not
			// enter a training pass).
			fresh := newModel(t, Config{Backbone: c.backbone, InChannels: 3, ImageSize: c.size, NumClasses: 3, ChannelsLast: c.cl})
			var a, b []float32
			torch.NoGrad(func() { a, b = floats(m.Logits(x, true)), floats(fresh.Logits(x, true)) })
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("a training forward of a folded model differs from an unfolded one's")
			}
		})
	}
}
