package nn

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"protoherb/safetensors"
	"protoherb/torch"
)

func values(t *testing.T, x *torch.Tensor) []float64 {
	t.Helper()
	c := x.ToDType(torch.Float64)
	defer c.Free()
	v, err := c.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReadPythonFixture reads a file written by Python (testdata/gen_fixtures.py) and checks every
// dtype, shape, value and the metadata.
func TestReadPythonFixture(t *testing.T) {
	ts, meta, err := LoadSafetensors("testdata/fixture.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer FreeTensors(ts)
	if meta["format"] != "pt" || meta["note"] != "written by gen_fixtures.py" {
		t.Errorf("metadata %v", meta)
	}
	want := []struct {
		name  string
		dtype torch.DType
		shape []int64
		vals  []float64
	}{
		{"layer.weight", torch.Float32, []int64{2, 3}, []float64{-1, -0.5, 0, 0.5, 1, 1.5}},
		{"layer.double", torch.Float64, []int64{2}, []float64{1.0 / 3, -2.5e300}},
		{"bn.num_batches_tracked", torch.Int64, []int64{}, []float64{42}},
		{"half", torch.Float16, []int64{5}, []float64{1, -0.5, 65504, 6.103515625e-05, 5.960464477539063e-08}},
		{"bfloat", torch.DType(15), []int64{3}, []float64{1, -3.140625, float64(math.Float32frombits(0x7149f2ca &^ 0xffff))}},
		{"ints32", torch.Int32, []int64{2, 2}, []float64{-7, 2147483647, 0, -2147483648}},
		{"ints16", torch.DType(2), []int64{2}, []float64{-32768, 12345}},
		{"ints8", torch.Int8, []int64{3}, []float64{-128, 127, 5}},
		{"bytes", torch.Uint8, []int64{3}, []float64{0, 255, 7}},
		{"mask", torch.Bool, []int64{3}, []float64{1, 0, 1}},
		{"empty", torch.Float32, []int64{0, 4}, []float64{}},
	}
	if len(ts) != len(want) {
		t.Errorf("%d tensors, want %d", len(ts), len(want))
	}
	h, err := safetensors.ReadHeader("testdata/fixture.safetensors")
	if err != nil || len(h.Tensors) != len(want) || h.Meta["format"] != "pt" || h.Tensors["ints32"].DType != safetensors.I32 ||
		!slices.Equal(h.Tensors["layer.weight"].Shape, []int64{2, 3}) {
		t.Errorf("header: %+v %v", h, err)
	}
	if _, err := safetensors.ReadHeader("testdata/tiny.pt"); err == nil || !strings.Contains(err.Error(), "tiny.pt") {
		t.Errorf("header of a non-safetensors file: %v", err)
	}
	for _, w := range want {
		x := ts[w.name]
		if x == nil {
			t.Errorf("missing %s", w.name)
			continue
		}
		if x.DType() != w.dtype || !slices.Equal(x.Shape(), w.shape) {
			t.Errorf("%s: %v %v, want %v %v", w.name, x.DType(), x.Shape(), w.dtype, w.shape)
			continue
		}
		if w.name == "bfloat" { // 1e30 rounded to bfloat16 by torch: check the first two exactly, the third closely
			v := values(t, x)
			if v[0] != 1 || v[1] != -3.140625 || math.Abs(v[2]-1e30)/1e30 > 1e-2 {
				t.Errorf("bfloat: %v", v)
			}
			continue
		}
		if v := values(t, x); !slices.Equal(v, w.vals) {
			t.Errorf("%s: %v, want %v", w.name, v, w.vals)
		}
	}
}

// TestFixtureRoundTrip rewrites the Python fixture with SaveSafetensors and reads it back bit-exact.
func TestFixtureRoundTrip(t *testing.T) {
	ps, meta, err := ReadSafetensors("testdata/fixture.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer FreeParams(ps)
	path := filepath.Join(t.TempDir(), "copy.safetensors")
	if err := SaveSafetensors(path, ps, meta); err != nil {
		t.Fatal(err)
	}
	qs, meta2, err := ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer FreeParams(qs)
	if len(meta2) != len(meta) || meta2["note"] != meta["note"] {
		t.Errorf("metadata %v, want %v", meta2, meta)
	}
	if len(qs) != len(ps) {
		t.Fatalf("%d tensors back, want %d", len(qs), len(ps))
	}
	for i := range ps {
		a, err1 := tensorBytes(ps[i].T)
		b, err2 := tensorBytes(qs[i].T)
		if err1 != nil || err2 != nil || ps[i].Name != qs[i].Name || !slices.Equal(a, b) || qs[i].T.DType() != ps[i].T.DType() {
			t.Errorf("%s: round trip differs (%v %v)", ps[i].Name, err1, err2)
		}
	}
	// Our writer's data section is the same bytes as Python's: same layout, same offsets.
	orig, _ := os.ReadFile("testdata/fixture.safetensors")
	mine, _ := os.ReadFile(path)
	no, nm := binary.LittleEndian.Uint64(orig), binary.LittleEndian.Uint64(mine)
	if !slices.Equal(orig[8+no:], mine[8+nm:]) {
		t.Error("data sections differ from Python's")
	}
}

func TestModelSaveLoadBitExact(t *testing.T) {
	cfg := Config{Backbone: "resnet12", InChannels: 3, EmbedDim: 16, NumClasses: 5, Classifier: "cosine"}
	a := newModel(t, cfg)
	forwardShape(t, a, 2, 3, 16, true) // move the batch-norm statistics away from their init
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := SaveSafetensors(path, a.State(), map[string]string{"backbone": "resnet12"}); err != nil {
		t.Fatal(err)
	}
	if err := torch.ManualSeed(99); err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rep, err := b.Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Missing)+len(rep.Unexpected) != 0 || len(rep.Loaded) != len(a.State()) {
		t.Errorf("report %v", rep)
	}
	as, bs := a.State(), b.State()
	for i := range as {
		x, _ := tensorBytes(as[i].T)
		y, _ := tensorBytes(bs[i].T)
		if !slices.Equal(x, y) || as[i].T.DType() != bs[i].T.DType() {
			t.Errorf("%s differs after load", as[i].Name)
		}
	}
	// Loaded parameters are still trainable leaves.
	if !b.Parameters()[0].T.RequiresGrad() {
		t.Error("loaded parameter lost requires_grad")
	}
}

func writeRaw(t *testing.T, header string, data []byte) string {
	t.Helper()
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	b = append(b, data...)
	p := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadFiles(t *testing.T) {
	good, _ := os.ReadFile("testdata/fixture.safetensors")
	dir := t.TempDir()
	trunc := filepath.Join(dir, "truncated.safetensors")
	os.WriteFile(trunc, good[:len(good)-5], 0o644)
	short := filepath.Join(dir, "short.safetensors")
	os.WriteFile(short, good[:5], 0o644)
	hdrCut := filepath.Join(dir, "header-cut.safetensors")
	os.WriteFile(hdrCut, good[:100], 0o644)
	cases := []struct{ path, want string }{
		{trunc, "truncated"},
		{short, "shorter than"},
		{hdrCut, "exceeds the file"},
		{writeRaw(t, `{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]`, make([]byte, 8)), "JSON header"},
		{writeRaw(t, `{"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}`, make([]byte, 8)), "unsupported dtype"},
		{writeRaw(t, `{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}`, make([]byte, 8)), "do not hold"},
		{writeRaw(t, `{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}`, make([]byte, 12)), "padded"},
		{writeRaw(t, `{"__metadata__": {"x": 1}}`, nil), "__metadata__"},
		{filepath.Join(dir, "nope.safetensors"), "no such file"},
	}
	for _, c := range cases {
		_, _, err := LoadSafetensors(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s: error %v, want one naming the file and saying %q", filepath.Base(c.path), err, c.want)
		}
	}
}

func TestLoadMismatch(t *testing.T) {
	dir := t.TempDir()
	src := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28, NumClasses: 5})
	full := filepath.Join(dir, "full.safetensors")
	if err := SaveSafetensors(full, src.State(), nil); err != nil {
		t.Fatal(err)
	}
	// Missing tensor: strict fails naming it, non-strict reports it.
	partial := filepath.Join(dir, "partial.safetensors")
	st := src.State()
	if err := SaveSafetensors(partial, st[1:], nil); err != nil {
		t.Fatal(err)
	}
	dst := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28, NumClasses: 5})
	if _, err := dst.Load(partial, true); err == nil || !strings.Contains(err.Error(), "encoder.0.0.weight") || !strings.Contains(err.Error(), partial) {
		t.Errorf("strict load of a file missing encoder.0.0.weight: %v", err)
	}
	rep, err := dst.Load(partial, false)
	if err != nil || !slices.Equal(rep.Missing, []string{"encoder.0.0.weight"}) {
		t.Errorf("non-strict: %v %v", rep, err)
	}
	// Unexpected tensors: a model without a classifier loading a file with one.
	noHead := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28})
	rep, err = noHead.Load(full, false)
	if err != nil || !slices.Equal(rep.Unexpected, []string{"fc.bias", "fc.weight"}) {
		t.Errorf("unexpected keys: %v %v", rep, err)
	}
	// Shape mismatch: 3-channel model, 1-channel weights.
	rgb := newModel(t, Config{Backbone: "conv4", InChannels: 3, ImageSize: 28, NumClasses: 5})
	_, err = rgb.Load(full, false)
	if err == nil || !strings.Contains(err.Error(), "encoder.0.0.weight") || !strings.Contains(err.Error(), "[64 3 3 3]") ||
		!strings.Contains(err.Error(), "[64 1 3 3]") {
		t.Errorf("shape mismatch error %v", err)
	}
	// Backbone-only load ignores a mismatching classifier.
	other := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28, NumClasses: 9})
	if _, err := other.Load(full, false); err == nil {
		t.Error("fc shape mismatch not reported")
	}
	rep, err = other.LoadBackbone(full)
	if err != nil || len(rep.Missing) != 0 || len(rep.Unexpected) != 2 {
		t.Errorf("LoadBackbone: %v %v", rep, err)
	}
}

func TestTorchScriptBackbone(t *testing.T) {
	m := newModel(t, Config{Backbone: "torchscript:testdata/tiny.pt", InChannels: 1, ImageSize: 8, NumClasses: 3})
	var exp struct{ Output []float64 }
	b, err := os.ReadFile("testdata/tiny_expected.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	in := make([]float32, 128)
	for i := range in {
		in[i] = float32(-1 + 2*float64(i)/127)
	}
	s := torch.NewScope()
	defer s.Close()
	x := torch.FromFloat32(s, in, 2, 1, 8, 8)
	y := m.Embed(x, false)
	v := values(t, y)
	for i := range v {
		if math.Abs(v[i]-exp.Output[i]) > 1e-5 {
			t.Fatalf("output %d: %v, Python gave %v", i, v[i], exp.Output[i])
		}
	}
	names := []string{}
	for _, p := range m.State() {
		names = append(names, p.Name)
	}
	want := []string{"conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "fc.weight", "fc.bias"}
	if !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	// Trainable: gradients reach the module's parameters and an optimizer step changes the output.
	l := m.Logits(x, true).Sum(false)
	if err := l.Backward(); err != nil {
		t.Fatal(err)
	}
	opt, err := torch.NewAdam(Tensors(m.Parameters()), torch.AdamOptions{LR: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	v2 := values(t, m.Embed(x, false))
	if slices.Equal(v, v2) {
		t.Error("an Adam step did not change the TorchScript backbone")
	}
	// Save → load through safetensors by the module's names.
	path := filepath.Join(t.TempDir(), "tiny.safetensors")
	if err := SaveSafetensors(path, m.State(), nil); err != nil {
		t.Fatal(err)
	}
	m2 := newModel(t, Config{Backbone: "torchscript:testdata/tiny.pt", InChannels: 1, ImageSize: 8, NumClasses: 3})
	if _, err := m2.Load(path, true); err != nil {
		t.Fatal(err)
	}
	if v3 := values(t, m2.Embed(x, false)); !slices.Equal(v2, v3) {
		t.Error("loaded TorchScript backbone differs")
	}
}

// TestPythonReadsOurFiles runs testdata/read_safetensors.py (torch + json + struct, as the reference
// loader checks the layout) on a model saved by SaveSafetensors; it skips without python3-torch.
func TestPythonReadsOurFiles(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skip("python3-torch not installed (apt-get install python3-torch): skipping the Python cross-check")
	}
	m := newModel(t, Config{Backbone: "conv4", InChannels: 1, ImageSize: 28, EmbedDim: 8, NumClasses: 3, Classifier: "cosine"})
	forwardShape(t, m, 2, 1, 28, true)
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := SaveSafetensors(path, m.State(), map[string]string{"backbone": "conv4"}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "testdata/read_safetensors.py", path)
	cmd.Dir = "." // not the repository root, whose torch/ folder would shadow Python's torch
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var got struct {
		Metadata map[string]string
		Tensors  map[string][3]json.RawMessage
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Metadata["backbone"] != "conv4" || len(got.Tensors) != len(m.State()) {
		t.Fatalf("python saw metadata %v and %d tensors, want %d", got.Metadata, len(got.Tensors), len(m.State()))
	}
	for _, p := range m.State() {
		e, ok := got.Tensors[p.Name]
		if !ok {
			t.Errorf("python lacks %s", p.Name)
			continue
		}
		var dtype string
		var shape []int64
		var sum float64
		json.Unmarshal(e[0], &dtype)
		json.Unmarshal(e[1], &shape)
		json.Unmarshal(e[2], &sum)
		var want float64
		for _, v := range values(t, p.T) {
			want += v
		}
		if dtype != p.T.DType().String() || !slices.Equal(shape, p.T.Shape()) || math.Abs(sum-want) > 1e-9*max(1, math.Abs(want)) {
			t.Errorf("%s: python sees %s %v sum %v, Go %v %v sum %v", p.Name, dtype, shape, sum, p.T.DType(), p.T.Shape(), want)
		}
	}
}

// TestTorchvisionWeights loads a torchvision ResNet-18's state dict (written by
// testdata/torchvision_ref.py) strictly, without renaming, and checks that our forward gives
// torchvision's logits; it skips without python3-torchvision.
func TestTorchvisionWeights(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torchvision").Run(); err != nil {
		t.Skip("python3-torchvision not installed (apt-get install python3-torchvision): skipping the torchvision cross-check")
	}
	dir := t.TempDir()
	if out, err := exec.Command(py, "testdata/torchvision_ref.py", "resnet18", dir).CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var ref struct {
		Logits []float64
		Params int64
	}
	b, err := os.ReadFile(filepath.Join(dir, "resnet18.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	m := newModel(t, Config{Backbone: "resnet18", InChannels: 3, NumClasses: 1000})
	rep, err := m.Load(filepath.Join(dir, "resnet18.safetensors"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Loaded) != 122 || NumParams(m.Parameters()) != ref.Params {
		t.Errorf("loaded %d tensors, %d parameters (torchvision %d)", len(rep.Loaded), NumParams(m.Parameters()), ref.Params)
	}
	in := make([]float32, 2*3*64*64)
	for i := range in {
		in[i] = float32(-2 + 4*float64(i)/float64(len(in)-1))
	}
	s := torch.NewScope()
	defer s.Close()
	var got []float64
	torch.NoGrad(func() { got = values(t, m.Logits(torch.FromFloat32(s, in, 2, 3, 64, 64), false)) })
	if len(got) != len(ref.Logits) {
		t.Fatalf("%d logits, torchvision %d", len(got), len(ref.Logits))
	}
	var worst float64
	for i := range got {
		worst = max(worst, math.Abs(got[i]-ref.Logits[i])/(1+math.Abs(ref.Logits[i])))
	}
	if worst > 1e-4 {
		t.Errorf("logits differ from torchvision's by up to %.3g (relative)", worst)
	}
}
