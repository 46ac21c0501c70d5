package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWriteReadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	f32 := []float32{1, -2.5, 3e-8, 4, 5, 6}
	i64 := []int64{-1, 1 << 40}
	f64 := []float64{1.0 / 3}
	err := Write(path, []Tensor{FromFloat32("a", f32, 2, 3), FromInt64("b", i64, 2), FromFloat64("c", f64),
		{Name: "empty", DType: F32, Shape: []int64{0, 4}}}, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Meta["k"] != "v" || !slices.Equal(f.Names, []string{"a", "b", "c", "empty"}) || f.DataStart%8 != 0 {
		t.Fatalf("header %+v", f.Header)
	}
	if err := f.Expect(map[string]Info{"a": {DType: F32, Shape: []int64{2, 3}}, "c": {DType: F64, Shape: []int64{}}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Expect(map[string]Info{"a": {DType: F32, Shape: []int64{3, 2}}}); err == nil || !strings.Contains(err.Error(), "tensor a is F32 [2 3], want F32 [3 2]") {
		t.Errorf("wrong shape: %v", err)
	}
	got32, got64, gotI := make([]float32, 6), make([]float64, 1), make([]int64, 2)
	if err := f.Read("a", Bytes(got32)); err != nil || !slices.Equal(got32, f32) {
		t.Errorf("a: %v %v", got32, err)
	}
	if err := f.Read("b", Bytes(gotI)); err != nil || !slices.Equal(gotI, i64) {
		t.Errorf("b: %v %v", gotI, err)
	}
	if err := f.Read("c", Bytes(got64)); err != nil || got64[0] != f64[0] {
		t.Errorf("c: %v %v", got64, err)
	}
	if err := f.Read("a", make([]byte, 3)); err == nil || !strings.Contains(err.Error(), "holds 24 bytes") {
		t.Errorf("short destination: %v", err)
	}
	if err := f.Read("nope", nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestWriteRefusesBadTensors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	for _, ts := range [][]Tensor{
		{FromFloat32("a", []float32{1}), FromFloat32("a", []float32{1})}, // duplicate
		{FromFloat32("__metadata__", []float32{1})},                      // reserved
		{FromFloat32("a", []float32{1, 2, 3}, 2, 2)},                     // data does not fill the shape
		{{Name: "a", DType: "Q8", Shape: []int64{1}, Data: []byte{1}}},   // unknown dtype
	} {
		if err := Write(path, ts, nil); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%+v: error %v", ts, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("a refused write left %s", path)
		}
	}
}

// Damaged files fail with the file named and the problem said.
func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.safetensors")
	if err := Write(good, []Tensor{FromFloat32("a", []float32{1, 2}, 2), FromFloat32("b", []float32{3}, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	n := binary.LittleEndian.Uint64(b)
	header := func(h string) []byte {
		for len(h)%8 != 0 {
			h += " "
		}
		out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(out, h...), make([]byte, 12)...)
	}
	cases := map[string][]byte{
		"shorter than its 8-byte":   b[:4],
		"exceeds the file":          b[:8+n-1],
		"truncated":                 b[:len(b)-1],
		"overlap":                   header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`),
		"unsupported dtype":         header(`{"a":{"dtype":"X","shape":[3],"data_offsets":[0,12]}}`),
		"do not hold":               header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}`),
		"bad shape":                 header(`{"a":{"dtype":"F32","shape":[-3],"data_offsets":[0,12]}}`),
		"not a map of strings":      header(`{"__metadata__":{"a":1},"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}`),
		"bad header entry":          header(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12],"extra":1}}`),
		"tensors cover 8 bytes but": header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`),
	}
	for want, data := range cases {
		p := filepath.Join(dir, "bad.safetensors")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadHeader(p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v", want, err)
		}
		if _, _, err := Parse(data); err == nil {
			t.Errorf("%s: Parse accepted it", want)
		}
	}
}
