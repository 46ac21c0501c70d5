package nn

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"protoherb/internal/testenv"
	"protoherb/torch"
)

// tiny_dataparallel.pth (testdata/torch_fixtures.py tiny): a checkpoint dict from torch.save holding a
// DataParallel state dict under "state_dict", with an optimizer state, an argparse.Namespace and
// numbers around it.
func TestReadWeightsTorchFile(t *testing.T) {
	ts, meta, err := ReadWeights("testdata/tiny_dataparallel.pth")
	if err != nil {
		t.Fatal(err)
	}
	defer FreeTensors(ts)
	if meta != nil {
		t.Errorf("metadata %v from a .pth", meta)
	}
	var names []string
	for k := range ts {
		names = append(names, k)
	}
	slices.Sort(names)
	want := []string{"bn.num_batches_tracked", "bn.running_var", "conv.bias", "conv.weight", "half", "view"}
	if !slices.Equal(names, want) {
		t.Fatalf("names %v, want %v (the state dict's, module. stripped)", names, want)
	}
	f32 := func(name string, shape []int64, want []float32) {
		t.Helper()
		x := ts[name]
		if x.DType() != torch.Float32 {
			c := x.ToDType(torch.Float32)
			defer c.Free()
			x = c
		}
		got, err := x.Float32s()
		if err != nil || !slices.Equal(x.Shape(), shape) || !slices.Equal(got, want) {
			t.Errorf("%s: %v %v (%v), want %v %v", name, x.Shape(), got, err, shape, want)
		}
	}
	f32("conv.weight", []int64{2, 1, 2, 2}, []float32{0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875})
	f32("conv.bias", []int64{2}, []float32{0.5, -0.5})
	f32("half", []int64{2}, []float32{1.5, -2})
	f32("view", []int64{4, 3}, []float32{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}) // a transposed view
	if d := ts["bn.running_var"].DType(); d != torch.Float64 {
		t.Errorf("bn.running_var is %v, want float64", d)
	}
	if d := ts["half"].DType(); d != torch.Float16 {
		t.Errorf("half is %v, want float16", d)
	}
	if v, err := ts["bn.num_batches_tracked"].Item(); err != nil || v != 7 || ts["bn.num_batches_tracked"].DType() != torch.Int64 {
		t.Errorf("bn.num_batches_tracked = %v (%v), want int64 7", v, err)
	}
}

func TestReadWeightsBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct{ name, want string }{
		{write("legacy.pth", []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")), "legacy format"},
		{write("empty.pth", nil), "empty file"},
		{write("zip.pth", []byte("PK\x03\x04 not really a zip")), "not a torch.save file"},
		{filepath.Join(dir, "absent.pth"), "no such file"},
	}
	for _, c := range cases {
		ts, _, err := ReadWeights(c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: error %v, want one naming the file and containing %q", filepath.Base(c.name), err, c.want)
		}
		FreeTensors(ts)
	}
}

func TestPickStateDict(t *testing.T) {
	pt := func(keys ...string) torch.PickledTensor { return torch.PickledTensor{Keys: keys} }
	cases := []struct {
		name  string
		in    []torch.PickledTensor
		where string
		want  []bool
		err   string
	}{
		{"bare", []torch.PickledTensor{pt("a"), pt("b")}, "", []bool{true, true}, ""},
		{"state_dict first", []torch.PickledTensor{pt("model", "a"), pt("state_dict", "a"), pt("x")}, "state_dict", []bool{false, true, false}, ""},
		{"model", []torch.PickledTensor{pt("model", "a"), pt("ema", "a")}, "model", []bool{true, false}, ""},
		{"none", []torch.PickledTensor{pt("ema", "a"), pt("opt", "state", "0")}, "", nil, "under ema, opt/state"},
		{"empty", nil, "", nil, "no tensors"},
	}
	for _, c := range cases {
		got, where, err := pickStateDict(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || where != c.where || !slices.Equal(got, c.want) {
			t.Errorf("%s: %v %q %v, want %v %q", c.name, got, where, err, c.want, c.where)
		}
	}
}

func TestStripModulePrefix(t *testing.T) {
	a, b := torch.Zeros(nil, torch.Float32, torch.CPU, 1), torch.Zeros(nil, torch.Float32, torch.CPU, 1)
	defer a.Free()
	defer b.Free()
	m := map[string]*torch.Tensor{"module.x": a, "module.module.y": b}
	if !StripModulePrefix(m) || m["x"] != a || m["module.y"] != b || len(m) != 2 {
		t.Errorf("stripped once: %v", m)
	}
	if StripModulePrefix(map[string]*torch.Tensor{"module.x": a, "y": b}) {
		t.Error("stripped a prefix that not every name has")
	}
}

// TestTorchvisionFiles loads torchvision's ResNet-18 (saved from DataParallel) and ResNet-50 state
// dicts, as torch.save wrote them, into our backbones, and compares the embeddings with
// torchvision's on the same input tensor. The files (random weights and batch-norm statistics) are
// written by Debian's python3-torchvision; the test skips without it.
func TestTorchvisionFiles(t *testing.T) {
	py := testenv.TorchVision(t)
	dir := t.TempDir()
	if out, err := exec.Command(py, "testdata/torch_fixtures.py", "torchvision", dir).CombinedOutput(); err != nil {
		t.Fatalf("torch_fixtures.py: %v\n%s", err, out)
	}
	byName := func(file string) map[string]*torch.Tensor {
		ts, err := torch.LoadPickle(file)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*torch.Tensor{}
		for _, p := range ts {
			m[p.Keys[0]] = p.T
		}
		return m
	}
	x := byName(filepath.Join(dir, "input.pth"))["x"]
	expected := byName(filepath.Join(dir, "expected.pth"))
	for _, name := range []string{"resnet18", "resnet50"} {
		m, err := New(Config{Backbone: name, ImageSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		ts, _, err := ReadWeights(filepath.Join(dir, name+".pth"))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := LoadStrict(m.State(), ts, func(n string) bool { return strings.HasPrefix(n, "fc.") })
		FreeTensors(ts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []float32
		torch.NoGrad(func() { got, err = m.Embed(x, false).Float32s() })
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, err := expected[name].Float32s()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, torchvision %d", name, len(got), len(want))
		}
		var diff, norm float64
		for i := range got {
			diff += float64(got[i]-want[i]) * float64(got[i]-want[i])
			norm += float64(want[i]) * float64(want[i])
		}
		rel := math.Sqrt(diff / norm)
		t.Logf("%s: %d tensors loaded, embeddings %d-d, relative difference to torchvision %.2g", name, len(rep.Loaded), len(want)/2, rel)
		if rel > 1e-4 || norm == 0 {
			t.Errorf("%s: embeddings differ from torchvision's by %.3g relative (want ≤ 1e-4)", name, rel)
		}
	}
}

func TestIsTorchScript(t *testing.T) {
	for file, want := range map[string]bool{"testdata/tiny.pt": true, "testdata/tiny_dataparallel.pth": false,
		"testdata/fixture.safetensors": false, "testdata/absent.pt": false} {
		if got := IsTorchScript(file); got != want {
			t.Errorf("IsTorchScript(%s) = %v, want %v", file, got, want)
		}
	}
}
