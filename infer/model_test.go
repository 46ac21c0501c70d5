package infer

import (
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"protoherb/imageio"
	"protoherb/internal/testenv"
	"protoherb/nn"
	"protoherb/torch"
)

// saveRenamed writes m's state as safetensors with every name passed through rename ("" drops the
// tensor), plus extra tensors.
func saveRenamed(t *testing.T, m *nn.Model, path string, rename func(string) string, extra ...nn.Param) {
	t.Helper()
	var ps []nn.Param
	for _, p := range m.State() {
		if n := rename(p.Name); n != "" {
			ps = append(ps, nn.Param{Name: n, T: p.T})
		}
	}
	if err := nn.SaveSafetensors(path, append(ps, extra...), nil); err != nil {
		t.Fatal(err)
	}
}

func embedOnes(t *testing.T, e Embedder) []float32 {
	t.Helper()
	tf := e.Transform()
	x := make([]float32, 2*tf.Channels*tf.Size*tf.Size)
	for i := range x {
		x[i] = float32(i%7) / 7
	}
	v, err := e.Embed(x, 2)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Weights load strictly on every path: a DataParallel file loads (prefix stripped), a classifier
// head is left out, and a missing or unexpected tensor is an error naming it.
func TestLoadModelStrict(t *testing.T) {
	torch.ManualSeed(1)
	m, err := nn.New(nn.Config{Backbone: "conv4", InChannels: 1, ImageSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// LoadModel folds the batch norms into the convolutions; so does the reference, so that the
	// comparison stays exact.
	if err := m.FoldBatchNorm(); err != nil {
		t.Fatal(err)
	}
	ref := NewModelEmbedder(m, imageio.Transform{Size: 16, Channels: 1})
	want := embedOnes(t, ref)
	spec := ModelSpec{Backbone: "conv4", ImageSize: 16, Channels: 1}
	dir := t.TempDir()
	fc := torch.Zeros(nil, torch.Float32, torch.CPU, 5, 64)
	defer fc.Free()
	extra := torch.Zeros(nil, torch.Float32, torch.CPU, 3)
	defer extra.Free()

	dp := filepath.Join(dir, "dataparallel.safetensors")
	saveRenamed(t, m, dp, func(n string) string { return "module." + n }, nn.Param{Name: "module.fc.weight", T: fc})
	e, err := LoadModel(dp, spec)
	if err != nil {
		t.Fatalf("DataParallel file: %v", err)
	}
	if got := embedOnes(t, e); !slices.Equal(got, want) {
		t.Error("DataParallel file: embeddings differ from the saved model's")
	}
	e.Close()

	bad := []struct {
		name, want string
		rename     func(string) string
		extra      []nn.Param
	}{
		{"missing", "1 missing: encoder.2.0.bias", func(n string) string {
			if n == "encoder.2.0.bias" {
				return ""
			}
			return n
		}, nil},
		{"unexpected", "1 unexpected: encoder.9.weight", func(n string) string { return n },
			[]nn.Param{{Name: "encoder.9.weight", T: extra}}},
		{"other names", "missing: encoder.0.0.weight", func(n string) string { return "backbone." + n }, nil},
	}
	for _, c := range bad {
		p := filepath.Join(dir, c.name+".safetensors")
		saveRenamed(t, m, p, c.rename, c.extra...)
		e, err := LoadModel(p, spec)
		if err == nil {
			e.Close()
			t.Errorf("%s: loaded", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q, want one naming the file and %q", c.name, err, c.want)
		}
	}
}

// TestLoadModelTorchvisionDataParallel serves torchvision's ResNet-18 as saved by torch.save from
// DataParallel (random weights, written by python3-torchvision; skipped without it).
func TestLoadModelTorchvisionDataParallel(t *testing.T) {
	py := testenv.TorchVision(t)
	dir := t.TempDir()
	script := filepath.Join(testenv.RepoRoot(t), "nn", "testdata", "torch_fixtures.py")
	if out, err := exec.Command(py, script, "torchvision", dir, "resnet18").CombinedOutput(); err != nil {
		t.Fatalf("torch_fixtures.py: %v\n%s", err, out)
	}
	e, err := LoadModel(filepath.Join(dir, "resnet18.pth"), ModelSpec{Backbone: "resnet18", ImageSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	in, err := torch.LoadPickle(filepath.Join(dir, "input.pth"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := in[0].T.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Embed(x, 2)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := torch.LoadPickle(filepath.Join(dir, "expected.pth"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := exp[0].T.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	var diff, norm float64
	for i := range want {
		diff += float64(got[i]-want[i]) * float64(got[i]-want[i])
		norm += float64(want[i]) * float64(want[i])
	}
	if len(got) != len(want) || norm == 0 || diff > 1e-8*norm {
		t.Errorf("embeddings differ from torchvision's: %d vs %d values, squared error %.3g of %.3g", len(got), len(want), diff, norm)
	}
}

// Flip TTA averages an image's embedding with its mirror image's: the result is the mean of the two
// plain embeddings and the same for an image and its mirror. A model file whose config says
// flip_tta and fit loads with both.
func TestFlipTTA(t *testing.T) {
	torch.ManualSeed(2)
	m, err := nn.New(nn.Config{Backbone: "conv4", InChannels: 1, ImageSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x := make([]float32, 16*16)
	for i := range x {
		x[i] = float32((i*37)%23) / 23
	}
	plain := NewModelEmbedder(m, imageio.Transform{Size: 16, Channels: 1})
	a, err := plain.Embed(x, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := plain.Embed(mirror(x, 16), 1)
	if err != nil {
		t.Fatal(err)
	}
	tta := NewModelEmbedder(m, imageio.Transform{Size: 16, Channels: 1})
	tta.FlipTTA = true
	got, err := tta.Embed(append(slices.Clone(x), mirror(x, 16)...), 2)
	if err != nil {
		t.Fatal(err)
	}
	d := len(a)
	for k := 0; k < d; k++ {
		if mean := (a[k] + b[k]) / 2; math.Abs(float64(got[k]-mean)) > 1e-5 || got[k] != got[d+k] {
			t.Fatalf("dim %d: TTA %v and %v (mirror), want the mean %v for both", k, got[k], got[d+k], mean)
		}
	}
	var spec ModelSpec
	if err := spec.fill([]byte(`{"backbone":"conv4","image_size":16,"fit":true,"flip_tta":true}`)); err != nil {
		t.Fatal(err)
	}
	if !spec.Fit || !spec.FlipTTA {
		t.Errorf("config with fit and flip_tta read as %+v", spec)
	}
}
