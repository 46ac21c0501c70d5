package nn

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"protoherb/safetensors"
	"protoherb/torch"
)

// Tensors are stored in the safetensors format through package safetensors; this file converts
// between torch tensors and the format's dtypes and bytes.

// stDType maps safetensors dtypes to torch dtypes. BF16 is libtorch's ScalarType 15, I16 its 2.
var stDType = map[safetensors.DType]torch.DType{
	safetensors.F64: torch.Float64, safetensors.F32: torch.Float32, safetensors.F16: torch.Float16,
	safetensors.BF16: torch.DType(15), safetensors.I64: torch.Int64, safetensors.I32: torch.Int32,
	safetensors.I16: torch.DType(2), safetensors.I8: torch.Int8, safetensors.U8: torch.Uint8, safetensors.Bool: torch.Bool,
}

func stName(d torch.DType) (safetensors.DType, bool) {
	for k, v := range stDType {
		if v == d {
			return k, true
		}
	}
	return "", false
}

// SaveSafetensors writes ps (in order) with optional metadata to path, atomically: a reader never
// sees a partial file. Tensors may live on any device; names must be unique.
func SaveSafetensors(path string, ps []Param, meta map[string]string) error {
	ts := make([]safetensors.Tensor, len(ps))
	for i, p := range ps {
		if err := p.T.Err(); err != nil {
			return fmt.Errorf("%s: tensor %s: %w", path, p.Name, err)
		}
		dt, ok := stName(p.T.DType())
		if !ok {
			return fmt.Errorf("%s: tensor %s: dtype %v has no safetensors name", path, p.Name, p.T.DType())
		}
		b, err := tensorBytes(p.T)
		if err != nil {
			return fmt.Errorf("%s: tensor %s: %w", path, p.Name, err)
		}
		ts[i] = safetensors.Tensor{Name: p.Name, DType: dt, Shape: p.T.Shape(), Data: b}
	}
	return safetensors.Write(path, ts, meta)
}

// tensorBytes returns t's raw little-endian row-major data.
func tensorBytes(t *torch.Tensor) ([]byte, error) {
	switch d := t.DType(); d {
	case torch.Float32:
		v, err := t.Float32s()
		return safetensors.Bytes(v), err
	case torch.Float64:
		v, err := t.Float64s()
		return safetensors.Bytes(v), err
	case torch.Int64:
		v, err := t.Int64s()
		return safetensors.Bytes(v), err
	case torch.Uint8:
		return t.Uint8s()
	case torch.Bool:
		c := t.ToDType(torch.Uint8)
		defer c.Free()
		return c.Uint8s()
	case torch.Int32, torch.Int8, torch.DType(2):
		c := t.ToDType(torch.Int64)
		defer c.Free()
		v, err := c.Int64s()
		if err != nil {
			return nil, err
		}
		out := make([]byte, len(v)*d.Size())
		if d == torch.DType(2) {
			out = make([]byte, len(v)*2)
		}
		for i, x := range v {
			switch d {
			case torch.Int32:
				binary.LittleEndian.PutUint32(out[4*i:], uint32(int32(x)))
			case torch.Int8:
				out[i] = byte(int8(x))
			default:
				binary.LittleEndian.PutUint16(out[2*i:], uint16(int16(x)))
			}
		}
		return out, nil
	case torch.Float16, torch.DType(15):
		c := t.ToDType(torch.Float32)
		defer c.Free()
		v, err := c.Float32s()
		if err != nil {
			return nil, err
		}
		out := make([]byte, 2*len(v))
		for i, x := range v {
			var h uint16
			if d == torch.Float16 {
				h = f32toF16(x)
			} else {
				h = uint16(math.Float32bits(x) >> 16) // exact: the value came from a bfloat16
			}
			binary.LittleEndian.PutUint16(out[2*i:], h)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("dtype %v not supported", d)
	}
}

// ReadSafetensors reads every tensor of a safetensors file into new CPU tensors (owned by the
// caller), in data order, with the file's metadata.
func ReadSafetensors(path string) ([]Param, map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	h, body, err := safetensors.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a valid safetensors file: %w", path, err)
	}
	out := make([]Param, 0, len(h.Names))
	for _, name := range h.Names {
		e := h.Tensors[name]
		t := fromBytes(body[e.Offsets[0]:e.Offsets[1]], e.DType, e.Shape)
		if err := t.Err(); err != nil {
			FreeParams(out)
			return nil, nil, fmt.Errorf("%s: tensor %s: %w", path, name, err)
		}
		out = append(out, Param{Name: name, T: t})
	}
	return out, h.Meta, nil
}

// LoadSafetensors reads a safetensors file into new CPU tensors by name (owned by the caller: free
// them with FreeTensors) and its metadata.
func LoadSafetensors(path string) (map[string]*torch.Tensor, map[string]string, error) {
	ps, meta, err := ReadSafetensors(path)
	if err != nil {
		return nil, nil, err
	}
	m := make(map[string]*torch.Tensor, len(ps))
	for _, p := range ps {
		m[p.Name] = p.T
	}
	return m, meta, nil
}

// FreeTensors frees every tensor of a map returned by LoadSafetensors.
func FreeTensors(m map[string]*torch.Tensor) {
	for _, t := range m {
		t.Free()
	}
}

// FreeParams frees every tensor of ps.
func FreeParams(ps []Param) {
	for _, p := range ps {
		p.T.Free()
	}
}

// fromBytes builds a CPU tensor of a safetensors dtype from raw little-endian bytes.
func fromBytes(b []byte, dtype safetensors.DType, shape []int64) *torch.Tensor {
	if len(b) == 0 {
		// torch.From* leaks a pin on empty data (reported); an empty tensor has no data to copy anyway.
		return torch.Zeros(nil, stDType[dtype], torch.CPU, shape...)
	}
	switch dtype {
	case "F32":
		v := make([]float32, len(b)/4)
		copy(safetensors.Bytes(v), b)
		return torch.FromFloat32(nil, v, shape...)
	case "F64":
		v := make([]float64, len(b)/8)
		copy(safetensors.Bytes(v), b)
		return torch.FromFloat64(nil, v, shape...)
	case "I64":
		v := make([]int64, len(b)/8)
		copy(safetensors.Bytes(v), b)
		return torch.FromInt64(nil, v, shape...)
	case "U8":
		return torch.FromUint8(nil, slices.Clone(b), shape...)
	case "BOOL":
		return convert(torch.FromUint8(nil, slices.Clone(b), shape...), torch.Bool)
	case "I32", "I16", "I8":
		size := dtype.Size()
		v := make([]int64, len(b)/size)
		for i := range v {
			switch size {
			case 4:
				v[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
			case 2:
				v[i] = int64(int16(binary.LittleEndian.Uint16(b[2*i:])))
			default:
				v[i] = int64(int8(b[i]))
			}
		}
		return convert(torch.FromInt64(nil, v, shape...), stDType[dtype])
	case "F16", "BF16":
		v := make([]float32, len(b)/2)
		for i := range v {
			h := binary.LittleEndian.Uint16(b[2*i:])
			if dtype == "F16" {
				v[i] = f16toF32(h)
			} else {
				v[i] = math.Float32frombits(uint32(h) << 16)
			}
		}
		return convert(torch.FromFloat32(nil, v, shape...), stDType[dtype])
	}
	return torch.Errorf("safetensors", "unsupported dtype %q", dtype)
}

func convert(t *torch.Tensor, d torch.DType) *torch.Tensor {
	c := t.ToDType(d)
	t.Free()
	return c
}

// f16toF32 converts IEEE half bits to float32 (exact).
func f16toF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case exp == 0:
		if frac == 0 {
			return math.Float32frombits(sign)
		}
		f := float32(frac) / 1024 / 16384 // 2^-14 · frac/1024
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// f32toF16 converts a float32 that came from a half (exactly representable) back to half bits; other
// values are rounded to nearest even.
func f32toF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	frac := b & 0x7fffff
	switch {
	case exp == 0xff:
		if frac != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp-127 > 15:
		return sign | 0x7c00
	case exp-127 >= -14:
		e := uint32(exp-127+15) << 10
		m := frac >> 13
		r := frac & 0x1fff
		v := uint32(sign) | e | m
		if r > 0x1000 || (r == 0x1000 && m&1 == 1) {
			v++
		}
		return uint16(v)
	case exp-127 >= -25:
		m := frac | 0x800000
		shift := uint32(-14 - (exp - 127) + 13)
		v := m >> shift
		r := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if r > half || (r == half && v&1 == 1) {
			v++
		}
		return sign | uint16(v)
	}
	return sign
}

// LoadReport says which tensors a Load filled and which names did not match.
type LoadReport struct {
	Loaded     []string // names found in both
	Missing    []string // the model's names absent from the file
	Unexpected []string // the file's names the model does not have
}

func (r LoadReport) String() string {
	s := fmt.Sprintf("%d tensors loaded", len(r.Loaded))
	if len(r.Missing) > 0 {
		s += fmt.Sprintf("; %d missing: %s", len(r.Missing), abbrev(r.Missing))
	}
	if len(r.Unexpected) > 0 {
		s += fmt.Sprintf("; %d unexpected: %s", len(r.Unexpected), abbrev(r.Unexpected))
	}
	return s
}

func abbrev(xs []string) string {
	if len(xs) > 8 {
		return strings.Join(xs[:8], ", ") + ", ..."
	}
	return strings.Join(xs, ", ")
}

// LoadInto copies src's tensors into dst's by name (converting dtype and device). Every shape is
// checked before anything is copied: a mismatch fails naming the tensor and both shapes. With
// strict, missing or unexpected names are an error too (after nothing was copied).
func LoadInto(dst []Param, src map[string]*torch.Tensor, strict bool) (LoadReport, error) {
	var rep LoadReport
	have := make(map[string]bool, len(dst))
	for _, p := range dst {
		have[p.Name] = true
		s, ok := src[p.Name]
		if !ok {
			rep.Missing = append(rep.Missing, p.Name)
			continue
		}
		if err := s.Err(); err != nil {
			return rep, fmt.Errorf("tensor %s: %w", p.Name, err)
		}
		if ws, gs := p.T.Shape(), s.Shape(); !slices.Equal(ws, gs) {
			return rep, fmt.Errorf("tensor %s: shape mismatch: model has %v, weights have %v", p.Name, ws, gs)
		}
		rep.Loaded = append(rep.Loaded, p.Name)
	}
	for k := range src {
		if !have[k] {
			rep.Unexpected = append(rep.Unexpected, k)
		}
	}
	sort.Strings(rep.Unexpected)
	if strict && (len(rep.Missing) > 0 || len(rep.Unexpected) > 0) {
		return rep, fmt.Errorf("weights do not match the model (strict): %s", rep)
	}
	var err error
	torch.NoGrad(func() {
		for _, p := range dst {
			if s, ok := src[p.Name]; ok {
				if e := p.T.CopyFrom(s); e != nil {
					err = fmt.Errorf("tensor %s: %w", p.Name, e)
					return
				}
			}
		}
	})
	return rep, err
}

// Load fills the model's parameters and buffers from a safetensors file by name (--init, resume).
// Missing and unexpected names are reported (an error when strict); a shape mismatch is an error
// naming the tensor and both shapes, and then nothing is loaded.
func (m *Model) Load(path string, strict bool) (LoadReport, error) {
	return loadFile(path, m.State(), strict)
}

// LoadBackbone fills only the backbone from a safetensors file (e.g. ImageNet weights whose fc
// does not match this model's classifier): heads keep their fresh weights, the file's other tensors
// are reported as unexpected.
func (m *Model) LoadBackbone(path string) (LoadReport, error) {
	return loadFile(path, m.BackboneState(), false)
}

func loadFile(path string, dst []Param, strict bool) (LoadReport, error) {
	ts, _, err := LoadSafetensors(path)
	if err != nil {
		return LoadReport{}, err
	}
	defer FreeTensors(ts)
	rep, err := LoadInto(dst, ts, strict)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}
