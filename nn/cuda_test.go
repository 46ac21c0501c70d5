package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"protoherb/torch"
)

// TestCUDAMatchesCPU runs each backbone on the GPU with the CPU model's weights: the logits of a
// training-mode forward, the loss, every parameter's gradient and the eval-mode embeddings must match
// the CPU's within float32 tolerance (1e-3 of the largest value), with cuDNN's TF32 convolutions off
// (with them on, PyTorch's own gradients differ from the CPU's by up to 60 % at this batch size; see
// docs/benchmarks.md). Skipped without CUDA; on a GPU machine run the compiled test binary
// (`go test -c ./nn`, then `./nn.test -test.run CUDA -test.v`).
func TestCUDAMatchesCPU(t *testing.T) {
	if !torch.CUDAAvailable() {
		t.Skip("no CUDA device: this test runs on a GPU machine")
	}
	defer torch.SetCuDNNAllowTF32(torch.SetCuDNNAllowTF32(false))
	for _, c := range []struct {
		backbone     string
		size         int
		channelsLast bool
	}{
		{"conv4", 28, false},
		{"conv4", 84, true},
		{"resnet12", 32, false},
		{"resnet18", 64, false},
		{"resnet18", 64, true},
		{"resnet50", 64, true},
	} {
		t.Run(fmt.Sprintf("%s-%dpx-cl%v", c.backbone, c.size, c.channelsLast), func(t *testing.T) {
			cfg := Config{Backbone: c.backbone, InChannels: 3, ImageSize: c.size, NumClasses: 5, ChannelsLast: c.channelsLast}
			cpu := newModel(t, cfg)
			path := filepath.Join(t.TempDir(), "m.safetensors")
			if err := SaveSafetensors(path, cpu.State(), nil); err != nil {
				t.Fatal(err)
			}
			cfg.Device = torch.CUDA(0)
			gpu := newModel(t, cfg)
			if _, err := gpu.Load(path, true); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			x := make([]float32, 4*3*c.size*c.size)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			a, b := forwardBackward(t, cpu, x, c.size), forwardBackward(t, gpu, x, c.size)
			for name, va := range a {
				closeEnough(t, name, va, b[name], 1e-3)
			}
		})
	}
}

// forwardBackward returns the logits, loss, gradients and eval embeddings of m on x (4 images),
// copied to the host, by name.
func forwardBackward(t *testing.T, m *Model, x []float32, size int) map[string][]float32 {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	dev := m.Config.Device
	in := torch.FromFloat32(s, x, 4, 3, int64(size), int64(size)).ToDevice(dev)
	logits := m.Logits(in, true)
	loss := torch.CrossEntropy(logits, torch.FromInt64(s, []int64{0, 1, 2, 3}, 4).ToDevice(dev), 0, torch.ReduceMean)
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{"logits": host(t, logits), "loss": host(t, loss)}
	for _, p := range m.Parameters() {
		g := p.T.Grad()
		out["grad "+p.Name] = host(t, g)
		g.Free()
	}
	var emb []float32
	torch.NoGrad(func() { emb = host(t, m.Embed(in, false)) })
	out["embedding"] = emb
	return out
}

func host(t *testing.T, x *torch.Tensor) []float32 {
	t.Helper()
	v, err := x.ToDevice(torch.CPU).Contiguous().Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// closeEnough fails when b differs from a (the reference: CPU values, unfolded ones) by more than
// rel times a's largest magnitude anywhere (at least 1e-6: a convolution's bias before batch norm
// has a gradient of float32 round-off only).
func closeEnough(t *testing.T, name string, a, b []float32, rel float64) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("%s: %d values against %d", name, len(b), len(a))
		return
	}
	var big, worst float64
	for i := range a {
		big = max(big, math.Abs(float64(a[i])))
		worst = max(worst, math.Abs(float64(a[i])-float64(b[i])))
	}
	if worst > rel*max(big, 1e-6) || math.IsNaN(worst) {
		t.Errorf("%s: differs from the reference by %.3g (largest value %.3g)", name, worst, big)
	}
}
