package nn

import (
	"reflect"
	"testing"

	"protoherb/torch"
)

// TestFoldBatchNorm checks that folding the batch norms into the convolutions changes inference
// embeddings by float32 rounding only, on running statistics that are not the identity, and leaves
// everything else alone: a training forward and an eval forward with gradients on give the same
// values as before folding.
func TestFoldBatchNorm(t *testing.T) {
	for _, c := range []backboneCase{{"conv4", 28, false}, {"conv4", 28, true}, {"resnet12", 32, false}, {"resnet18", 32, true}, {"resnet50", 32, false}} {
		t.Run(c.name(), func(t *testing.T) {
			m := newModel(t, c.config())
			s := torch.NewScope()
			defer s.Close()
			x := torch.Randn(s, torch.Float32, torch.CPU, 4, 3, int64(c.size), int64(c.size))
			// Training-mode passes move the running statistics away from mean 0, variance 1.
			torch.NoGrad(func() {
				for range 3 {
					x2 := x.MulScalar(3).AddScalar(0.5)
					m.Embed(x2, true).Free()
					x2.Free()
				}
			})
			var plain, folded []float32
			torch.NoGrad(func() { plain = host(t, m.Embed(x, false)) })
			withGrad := host(t, m.Embed(x, false))
			if err := m.FoldBatchNorm(); err != nil {
				t.Fatal(err)
			}
			torch.NoGrad(func() { folded = host(t, m.Embed(x, false)) })
			closeEnough(t, "folded embeddings", plain, folded, 1e-4)
			if reflect.DeepEqual(plain, folded) {
				t.Logf("folded embeddings equal to the bit")
			}
			if got := host(t, m.Embed(x, false)); !reflect.DeepEqual(got, withGrad) {
				t.Fatalf("with gradients on, the eval forward changed after folding")
			}
			// A training-mode pass, even under NoGrad, uses batch statistics: never the folded weights.
			// A fresh model with the same seed has the same weights (running statistics do not
			// enter a training pass).
			fresh := newModel(t, c.config())
			var a, b []float32
			torch.NoGrad(func() { a, b = host(t, m.Logits(x, true)), host(t, fresh.Logits(x, true)) })
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("a training forward of a folded model differs from an unfolded one's")
			}
		})
	}
}
