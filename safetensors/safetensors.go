// Package safetensors reads and writes the safetensors file format
// (https://huggingface.co/docs/safetensors) with plain Go slices: no tensor library.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data section) plus an optional
// "__metadata__" string→string map, then the raw little-endian, row-major tensor data. Python reads
// the files with safetensors.torch.load_file.
//
// Write writes a whole file atomically (package atomicfile), streaming each tensor's bytes
// straight from the caller's slices; ReadHeader checks a header (dtypes, shapes against offsets,
// bounds, no overlap, data section fully covered) without reading the data; Open and File.Read
// read one tensor straight into the caller's slice, so a 283 MB embeddings file is never copied
// twice. Package nn converts to and from torch tensors on top of it; proto, infer and serve use it
// directly for their files.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"unsafe"

	"protoherb/atomicfile"
)

// MaxHeader bounds the JSON header (the reference implementation uses 100 MB).
const MaxHeader = 100 << 20

// DType is a safetensors dtype name.
type DType string

// The dtypes of the format that protoherb reads and writes.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// Size returns the bytes per element, 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, Bool:
		return 1
	}
	return 0
}

// Info describes one stored tensor.
type Info struct {
	DType   DType    `json:"dtype"`
	Shape   []int64  `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// Numel is the number of elements.
func (i Info) Numel() int64 {
	n := int64(1)
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// Is reports whether the tensor has the dtype and shape.
func (i Info) Is(d DType, shape ...int64) bool { return i.DType == d && slices.Equal(i.Shape, shape) }

// Header is a checked file header.
type Header struct {
	Tensors map[string]Info
	Names   []string // in data order
	Meta    map[string]string
	// DataStart is the file offset of the data section.
	DataStart int64
}

// Tensor is a named tensor's data for Write: Data holds Numel(Shape) × DType.Size() bytes.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte
}

// Number is a fixed-size element type whose memory is its little-endian encoding.
type Number interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~int16 | ~int8 | ~uint8
}

// Bytes views a slice as its bytes (no copy; the host must be little-endian, as Write and Read
// check).
func Bytes[T Number](xs []T) []byte {
	if len(xs) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&xs[0])), len(xs)*int(unsafe.Sizeof(xs[0])))
}

// FromFloat32 returns a float32 tensor over v (no copy).
func FromFloat32(name string, v []float32, shape ...int64) Tensor {
	return Tensor{Name: name, DType: F32, Shape: shape, Data: Bytes(v)}
}

// FromFloat64 returns a float64 tensor over v (no copy).
func FromFloat64(name string, v []float64, shape ...int64) Tensor {
	return Tensor{Name: name, DType: F64, Shape: shape, Data: Bytes(v)}
}

// FromInt64 returns an int64 tensor over v (no copy).
func FromInt64(name string, v []int64, shape ...int64) Tensor {
	return Tensor{Name: name, DType: I64, Shape: shape, Data: Bytes(v)}
}

var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

var errBigEndian = errors.New("safetensors I/O needs a little-endian machine")

// Write writes ts (in order) with optional metadata to path atomically: a reader never sees a
// partial file, and an interrupted write leaves any previous file in place.
func Write(path string, ts []Tensor, meta map[string]string) error {
	hdr, err := encodeHeader(ts, meta)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		for _, t := range ts {
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// encodeHeader checks the tensors and returns the JSON header, padded to 8 bytes as the reference
// writer does. Tensors are listed in the given order (the reference writer sorts; readers do not
// care).
func encodeHeader(ts []Tensor, meta map[string]string) ([]byte, error) {
	if !littleEndian {
		return nil, errBigEndian
	}
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(meta) > 0 {
		b, err := json.Marshal(meta)
		if err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		hdr.WriteString(`"__metadata__":`)
		hdr.Write(b)
	}
	seen := make(map[string]bool, len(ts))
	var off int64
	for i, t := range ts {
		if t.Name == "" || t.Name == "__metadata__" || seen[t.Name] {
			return nil, fmt.Errorf("tensor %d has an empty, reserved or duplicate name %q", i, t.Name)
		}
		seen[t.Name] = true
		if t.DType.Size() == 0 {
			return nil, fmt.Errorf("tensor %s: unknown dtype %q", t.Name, t.DType)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		info := Info{DType: t.DType, Shape: shape}
		if want := info.Numel() * int64(t.DType.Size()); want != int64(len(t.Data)) {
			return nil, fmt.Errorf("tensor %s: %d bytes of data for %v %s (%d bytes)", t.Name, len(t.Data), shape, t.DType, want)
		}
		info.Offsets = [2]int64{off, off + int64(len(t.Data))}
		off = info.Offsets[1]
		e, _ := json.Marshal(info)
		name, _ := json.Marshal(t.Name)
		if hdr.Len() > 1 {
			hdr.WriteByte(',')
		}
		hdr.Write(name)
		hdr.WriteByte(':')
		hdr.Write(e)
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	return hdr.Bytes(), nil
}

// ReadHeader reads and checks a file's header without reading the data.
func ReadHeader(path string) (*Header, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	f.Close()
	return &f.Header, nil
}

// Parse checks a whole file held in memory and returns its header and data section.
func Parse(data []byte) (*Header, []byte, error) {
	if len(data) < 8 {
		return nil, nil, fmt.Errorf("%d bytes, shorter than the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeader || n > uint64(len(data)-8) {
		return nil, nil, fmt.Errorf("header length %d exceeds the file (%d bytes): truncated or not safetensors", n, len(data))
	}
	h, err := parseHeader(data[8:8+n], int64(len(data))-8-int64(n))
	if err != nil {
		return nil, nil, err
	}
	h.DataStart = 8 + int64(n)
	return h, data[h.DataStart:], nil
}

// parseHeader decodes and checks the JSON header against a data section of bodyLen bytes.
func parseHeader(h []byte, bodyLen int64) (*Header, error) {
	if !littleEndian {
		return nil, errBigEndian
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(h, &raw); err != nil {
		return nil, fmt.Errorf("JSON header: %v", err)
	}
	out := &Header{Tensors: make(map[string]Info, len(raw))}
	for k, v := range raw {
		if k == "__metadata__" {
			if err := json.Unmarshal(v, &out.Meta); err != nil {
				return nil, fmt.Errorf("__metadata__ is not a map of strings: %v", err)
			}
			continue
		}
		e, err := parseEntry(k, v, bodyLen)
		if err != nil {
			return nil, err
		}
		out.Tensors[k] = e
		out.Names = append(out.Names, k)
	}
	sort.Slice(out.Names, func(i, j int) bool {
		a, b := out.Tensors[out.Names[i]].Offsets, out.Tensors[out.Names[j]].Offsets
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		return out.Names[i] < out.Names[j]
	})
	// Tensors must not overlap and must cover the data section (as the reference reader requires).
	var pos int64
	for _, k := range out.Names {
		e := out.Tensors[k]
		if e.Offsets[0] < pos && e.Offsets[1] > e.Offsets[0] {
			return nil, fmt.Errorf("tensor %s: data_offsets %v overlap the previous tensor", k, e.Offsets)
		}
		pos = max(pos, e.Offsets[1])
	}
	if pos != bodyLen {
		return nil, fmt.Errorf("tensors cover %d bytes but the data section has %d: truncated or padded file", pos, bodyLen)
	}
	if out.Meta == nil {
		out.Meta = map[string]string{}
	}
	return out, nil
}

func parseEntry(name string, v json.RawMessage, bodyLen int64) (Info, error) {
	var e Info
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("tensor %s: bad header entry: %v", name, err)
	}
	size := e.DType.Size()
	if size == 0 {
		return e, fmt.Errorf("tensor %s: unsupported dtype %q", name, e.DType)
	}
	if e.Shape == nil {
		e.Shape = []int64{}
	}
	count := int64(1)
	for _, d := range e.Shape {
		if d < 0 || (d > 0 && count > math.MaxInt64/d) {
			return e, fmt.Errorf("tensor %s: bad shape %v", name, e.Shape)
		}
		count *= d
	}
	b, end := e.Offsets[0], e.Offsets[1]
	if b < 0 || end < b || end-b != count*int64(size) {
		return e, fmt.Errorf("tensor %s: data_offsets %v do not hold %v %s (%d bytes)", name, e.Offsets, e.Shape, e.DType, count*int64(size))
	}
	if end > bodyLen {
		return e, fmt.Errorf("tensor %s: data ends at byte %d but the data section has %d bytes: truncated file", name, end, bodyLen)
	}
	return e, nil
}

// File is an open safetensors file whose header has been checked; Read reads one tensor.
type File struct {
	Header
	path string
	f    *os.File
}

// Open opens path and reads and checks its header. Errors name the file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := readHeader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a valid safetensors file: %w", path, err)
	}
	return &File{Header: *h, path: path, f: f}, nil
}

func readHeader(f *os.File) (*Header, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var nb [8]byte
	if _, err := io.ReadFull(f, nb[:]); err != nil {
		return nil, errors.New("shorter than its 8-byte header length")
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > MaxHeader || int64(n) > st.Size()-8 {
		return nil, fmt.Errorf("header length %d exceeds the file (%d bytes)", n, st.Size())
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, err
	}
	h, err := parseHeader(buf, st.Size()-8-int64(n))
	if err != nil {
		return nil, err
	}
	h.DataStart = 8 + int64(n)
	return h, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Path is the file's name.
func (f *File) Path() string { return f.path }

// Read reads tensor name's data into dst, which must have exactly its size in bytes.
func (f *File) Read(name string, dst []byte) error {
	e, ok := f.Tensors[name]
	if !ok {
		return fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	if n := e.Offsets[1] - e.Offsets[0]; int64(len(dst)) != n {
		return fmt.Errorf("%s: tensor %s holds %d bytes, the reader expects %d", f.path, name, n, len(dst))
	}
	if _, err := f.f.ReadAt(dst, f.DataStart+e.Offsets[0]); err != nil {
		return fmt.Errorf("%s: tensor %s: %w", f.path, name, err)
	}
	return nil
}

// Expect checks that the named tensors exist with the given dtypes and shapes; the error names the
// file, the tensor, what it is and what was expected.
func (f *File) Expect(want map[string]Info) error {
	names := make([]string, 0, len(want))
	for k := range want {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		w := want[k]
		have, ok := f.Tensors[k]
		if !ok {
			return fmt.Errorf("%s: no tensor %s (want %s %v)", f.path, k, w.DType, w.Shape)
		}
		if !have.Is(w.DType, w.Shape...) {
			return fmt.Errorf("%s: tensor %s is %s %v, want %s %v", f.path, k, have.DType, have.Shape, w.DType, w.Shape)
		}
	}
	return nil
}
