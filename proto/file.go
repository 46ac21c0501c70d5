package proto

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"protoherb/safetensors"
)

// Format is the metadata "format" value of a prototype store file.
const Format = "protoherb.prototypes/1"

// The file is safetensors: tensors sums [C, D] F64, counts [C] I64, sqnorms [C] F64 (Σ|x|² per
// class) and nearest [C] F64 (squared distance to the nearest other prototype, NaN when not known;
// absent in older files), row i being class i; metadata (string → string): format, dim, model
// (fingerprint), options (JSON of Options), build (JSON of the recorded Build), classes (JSON list
// of {id, name, genus, family}), generation (decimal; one more at every save through an Index),
// calibration (JSON of Calibration) and receipts (JSON list of Receipt).

// Save writes the store to path atomically: an interrupted save leaves any previous file intact.
func (s *Store) Save(path string) error {
	c := int64(len(s.classes))
	classes, err := json.Marshal(s.classes)
	if err != nil {
		return fmt.Errorf("%s: classes: %w", path, err)
	}
	opt, _ := json.Marshal(s.opt)
	build, _ := json.Marshal(s.build)
	cal, _ := json.Marshal(s.cal)
	receipts, _ := json.Marshal(nonNil(s.receipts))
	meta := map[string]string{
		"format":      Format,
		"dim":         strconv.Itoa(s.dim),
		"model":       s.model,
		"options":     string(opt),
		"classes":     string(classes),
		"build":       string(build),
		"generation":  strconv.FormatUint(s.gen, 10),
		"calibration": string(cal),
		"receipts":    string(receipts),
	}
	return safetensors.Write(path, []safetensors.Tensor{
		safetensors.FromFloat64("sums", s.sums, c, int64(s.dim)),
		safetensors.FromInt64("counts", s.counts, c),
		safetensors.FromFloat64("sqnorms", s.sqnorms, c),
		safetensors.FromFloat64("nearest", s.nearest, c),
	}, meta)
}

// Load reads a store written by Save. The data are read straight into the store's slices.
func Load(path string) (*Store, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	meta := f.Meta
	if v := meta["format"]; v != Format {
		return nil, fmt.Errorf("%s: not a prototype file (format %q, want %q)", path, v, Format)
	}
	dim, err := strconv.Atoi(meta["dim"])
	if err != nil || dim <= 0 {
		return nil, fmt.Errorf("%s: bad dim %q", path, meta["dim"])
	}
	var opt Options
	if err := json.Unmarshal([]byte(meta["options"]), &opt); err != nil {
		return nil, fmt.Errorf("%s: bad options: %w", path, err)
	}
	var classes []Class
	if err := json.Unmarshal([]byte(meta["classes"]), &classes); err != nil {
		return nil, fmt.Errorf("%s: bad classes: %w", path, err)
	}
	s, err := New(dim, meta["model"], classes, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := errors.Join(unmarshalIf(meta["build"], &s.build), unmarshalIf(meta["calibration"], &s.cal),
		unmarshalIf(meta["receipts"], &s.receipts)); err != nil {
		return nil, fmt.Errorf("%s: bad metadata: %w", path, err)
	}
	if g := meta["generation"]; g != "" {
		if s.gen, err = strconv.ParseUint(g, 10, 64); err != nil {
			return nil, fmt.Errorf("%s: bad generation %q", path, g)
		}
	}
	c := int64(len(classes))
	if err := f.Expect(map[string]safetensors.Info{
		"sums":    {DType: safetensors.F64, Shape: []int64{c, int64(dim)}},
		"counts":  {DType: safetensors.I64, Shape: []int64{c}},
		"sqnorms": {DType: safetensors.F64, Shape: []int64{c}},
	}); err != nil {
		return nil, fmt.Errorf("%w (%d classes in the metadata)", err, c)
	}
	if err := errors.Join(f.Read("sums", safetensors.Bytes(s.sums)), f.Read("counts", safetensors.Bytes(s.counts)),
		f.Read("sqnorms", safetensors.Bytes(s.sqnorms))); err != nil {
		return nil, err
	}
	if info, ok := f.Tensors["nearest"]; ok && info.Is(safetensors.F64, c) {
		if err := f.Read("nearest", safetensors.Bytes(s.nearest)); err != nil {
			return nil, err
		}
	}
	for r, n := range s.counts {
		if n < 0 {
			return nil, fmt.Errorf("%s: class %d has a negative count %d", path, classes[r].ID, n)
		}
	}
	for i, v := range s.sums {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: class %d has a non-finite sum", path, classes[i/dim].ID)
		}
	}
	return s, nil
}

// fileGeneration reads the generation recorded in the header of the prototype file at path.
func fileGeneration(path string) (uint64, error) {
	h, err := safetensors.ReadHeader(path)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	g := h.Meta["generation"]
	if g == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(g, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: bad generation %q", path, g)
	}
	return n, nil
}
