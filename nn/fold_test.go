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

// TestPrepackConvolutions checks that prepacked convolutions (with the ReLU fused where one follows)
// give the folded model's inference embeddings to float32 rounding, at the batch size they were
// packed for and at another, that every convolution was packed (a silent fallback would lose the
// speed), and that passes with gradients on still use the unpacked parameters.
func TestPrepackConvolutions(t *testing.T) {
	for _, c := range []backboneCase{{"conv4", 28, false}, {"conv4", 28, true}, {"resnet12", 32, false}, {"resnet18", 32, true}, {"resnet50", 32, false}} {
		t.Run(c.name(), func(t *testing.T) {
			m := newModel(t, c.config())
			if err := m.PrepackConvolutions(); err == nil {
				t.Fatal("PrepackConvolutions before FoldBatchNorm: no error")
			}
			s := torch.NewScope()
			defer s.Close()
			x4 := torch.Randn(s, torch.Float32, torch.CPU, 4, 3, int64(c.size), int64(c.size))
			x1 := x4.Narrow(0, 1, 1).Contiguous()
			withGrad := host(t, m.Embed(x4, false))
			if err := m.FoldBatchNorm(); err != nil {
				t.Fatal(err)
			}
			var folded4, folded1, packed4, packed1 []float32
			torch.NoGrad(func() { folded4, folded1 = host(t, m.Embed(x4, false)), host(t, m.Embed(x1, false)) })
			if err := m.PrepackConvolutions(); err != nil {
				t.Fatal(err)
			}
			torch.NoGrad(func() { packed4, packed1 = host(t, m.Embed(x4, false)), host(t, m.Embed(x1, false)) })
			closeEnough(t, "prepacked embeddings, batch 4", folded4, packed4, 1e-4)
			closeEnough(t, "prepacked embeddings, batch 1", folded1, packed1, 1e-4)
			pairs := m.Backbone.(pairer).convBNPairs()
			for i, cb := range pairs {
				if cb.conv.folded.packed == nil {
					t.Fatalf("convolution %d of %d was not packed", i, len(pairs))
				}
			}
			if got := host(t, m.Embed(x4, false)); !reflect.DeepEqual(got, withGrad) {
				t.Fatalf("with gradients on, the eval forward changed after prepacking")
			}
		})
	}
}
