package nn

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"protoherb/torch"
)

// TestGradientsMatchPyTorch runs a training-mode forward and backward of protoherb's ResNet-18 and
// of torchvision's with the same weights and input (testdata/torchvision_grads.py) on the CPU: the
// logits and every parameter's gradient must agree to float32 round-off (both call the same libtorch
// kernels; measured bit-identical with Debian's 1.13). The reference for the GPU check
// (TestCUDAMatchesCPU). Skips without python3-torchvision.
func TestGradientsMatchPyTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch, torchvision").Run(); err != nil {
		t.Skip("python3-torch and python3-torchvision not installed: skipping the PyTorch gradient cross-check")
	}
	torch.SetNumThreads(1) // one thread on both sides: the same reduction order
	m := newModel(t, Config{Backbone: "resnet18", InChannels: 3, ImageSize: 64, NumClasses: 5})
	dir := t.TempDir()
	weights, input, grads := filepath.Join(dir, "w.safetensors"), filepath.Join(dir, "x.f32"), filepath.Join(dir, "g.safetensors")
	if err := SaveSafetensors(weights, m.State(), nil); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 4*3*64*64)
	b := make([]byte, 0, 4*len(x))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x[i]))
	}
	if err := os.WriteFile(input, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got := forwardBackward(t, m, x, 64)
	s := torch.NewScope()
	defer s.Close()
	ps := []Param{{Name: "logits", T: torch.FromFloat32(s, got["logits"], int64(len(got["logits"])))}}
	for _, p := range m.Parameters() {
		v := got["grad "+p.Name]
		ps = append(ps, Param{Name: p.Name, T: torch.FromFloat32(s, v, int64(len(v)))})
	}
	if err := SaveSafetensors(grads, ps, nil); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "testdata/torchvision_grads.py", weights, input, grads)
	cmd.Dir = "." // not the repository root, whose torch/ folder would shadow Python's torch
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var rep struct {
		Logits float64
		Grads  map[string]float64
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rep.Grads) != len(m.Parameters()) {
		t.Fatalf("PyTorch compared %d gradients, protoherb has %d parameters", len(rep.Grads), len(m.Parameters()))
	}
	if rep.Logits > 1e-5 {
		t.Errorf("logits differ from torchvision's by %.3g of the largest", rep.Logits)
	}
	for name, rel := range rep.Grads {
		if rel > 1e-4 {
			t.Errorf("gradient of %s differs from PyTorch's by %.3g of its largest value", name, rel)
		}
	}
}
