package proto

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"protoherb/safetensors"
)

// EmbeddingsFormat is the metadata "format" value of an embeddings file.
const EmbeddingsFormat = "protoherb.embeddings/1"

// Embeddings are image embeddings with their image ids and, where known, class ids.
//
// File (safetensors): embeddings [N, D] F32, ids [N] I64, labels [N] I64 (class id, -1 unknown);
// metadata: format, dim, model (fingerprint), split, failed (JSON list of the image ids that could
// not be read, in no row), classes (JSON list of {id, name, genus, family}: the dataset's classes),
// root (the dataset's folder when embedded) and paths (JSON list of N image paths, relative to root
// with forward slashes, absolute for an image outside it; absent in files of older versions).
type Embeddings struct {
	Dim     int
	Model   string
	Split   string
	IDs     []int64
	Labels  []int64
	Vectors []float32
	Failed  []int64
	Classes []Class
	// Root is the dataset's folder; Paths the images of the rows (nil when unknown).
	Root  string
	Paths []string
}

// Len returns the number of embedded images.
func (e *Embeddings) Len() int { return len(e.IDs) }

// Save writes the embeddings atomically.
func (e *Embeddings) Save(path string) error {
	n := int64(len(e.IDs))
	if len(e.Labels) != len(e.IDs) || len(e.Vectors) != len(e.IDs)*e.Dim || (e.Paths != nil && len(e.Paths) != len(e.IDs)) {
		return fmt.Errorf("%s: %d ids, %d labels, %d paths and %d values of dimension %d do not agree", path, n, len(e.Labels), len(e.Paths), len(e.Vectors), e.Dim)
	}
	failed, _ := json.Marshal(nonNil(e.Failed))
	classes, err := json.Marshal(nonNil(e.Classes))
	if err != nil {
		return fmt.Errorf("%s: classes: %w", path, err)
	}
	meta := map[string]string{
		"format": EmbeddingsFormat, "dim": strconv.Itoa(e.Dim), "model": e.Model, "split": e.Split,
		"failed": string(failed), "classes": string(classes), "root": e.Root,
	}
	if e.Paths != nil {
		b, _ := json.Marshal(e.Paths)
		meta["paths"] = string(b)
	}
	return safetensors.Write(path, []safetensors.Tensor{
		safetensors.FromFloat32("embeddings", e.Vectors, n, int64(e.Dim)),
		safetensors.FromInt64("ids", e.IDs, n),
		safetensors.FromInt64("labels", e.Labels, n),
	}, meta)
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

// EmbeddingsHeader returns the dimension, model fingerprint and image count of an embeddings file
// without reading its data.
func EmbeddingsHeader(path string) (dim int, model string, n int64, err error) {
	f, err := openEmbeddings(path)
	if err != nil {
		return 0, "", 0, err
	}
	defer f.Close()
	return f.dim, f.Meta["model"], f.n, nil
}

type embeddingsFile struct {
	*safetensors.File
	dim int
	n   int64
}

// openEmbeddings opens an embeddings file and checks its header.
func openEmbeddings(path string) (*embeddingsFile, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	e := &embeddingsFile{File: f, n: -1}
	if v := f.Meta["format"]; v != EmbeddingsFormat {
		f.Close()
		return nil, fmt.Errorf("%s: not an embeddings file (format %q, want %q)", path, v, EmbeddingsFormat)
	}
	if e.dim, err = strconv.Atoi(f.Meta["dim"]); err != nil || e.dim <= 0 {
		f.Close()
		return nil, fmt.Errorf("%s: bad dim %q", path, f.Meta["dim"])
	}
	if ids := f.Tensors["ids"]; len(ids.Shape) == 1 {
		e.n = ids.Shape[0]
	}
	if err := f.Expect(map[string]safetensors.Info{
		"embeddings": {DType: safetensors.F32, Shape: []int64{e.n, int64(e.dim)}},
		"ids":        {DType: safetensors.I64, Shape: []int64{e.n}},
		"labels":     {DType: safetensors.I64, Shape: []int64{e.n}},
	}); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (want embeddings [N, %d] F32, ids [N] I64 and labels [N] I64)", err, e.dim)
	}
	return e, nil
}

// LoadEmbeddings reads an embeddings file. The data are read straight into the returned slices (no
// intermediate copies: 138,292 × 512 floats are 283 MB). Rows with a non-finite value are an error
// naming the row and the image.
func LoadEmbeddings(path string) (*Embeddings, error) {
	f, err := openEmbeddings(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dim, n, meta := f.dim, f.n, f.Meta
	e := &Embeddings{Dim: dim, Model: meta["model"], Split: meta["split"], Root: meta["root"]}
	if err := errors.Join(unmarshalIf(meta["failed"], &e.Failed), unmarshalIf(meta["classes"], &e.Classes),
		unmarshalIf(meta["paths"], &e.Paths)); err != nil {
		return nil, fmt.Errorf("%s: metadata: %w", path, err)
	}
	if e.Paths != nil && int64(len(e.Paths)) != n {
		return nil, fmt.Errorf("%s: metadata lists %d image paths for %d rows", path, len(e.Paths), n)
	}
	e.Vectors = make([]float32, n*int64(dim))
	e.IDs, e.Labels = make([]int64, n), make([]int64, n)
	if err := errors.Join(f.Read("embeddings", safetensors.Bytes(e.Vectors)), f.Read("ids", safetensors.Bytes(e.IDs)),
		f.Read("labels", safetensors.Bytes(e.Labels))); err != nil {
		return nil, err
	}
	if r, j := firstNonFinite(e.Vectors, e.Dim); r >= 0 {
		return nil, fmt.Errorf("%s: embedding row %d (image %d) has a non-finite value at column %d", path, r, e.IDs[r], j)
	}
	return e, nil
}

func unmarshalIf(s string, v any) error {
	if s == "" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

func firstNonFinite(x []float32, dim int) (int, int) {
	for i, v := range x {
		if v != v || v > 3.4028234663852886e38 || v < -3.4028234663852886e38 {
			return i / dim, i % dim
		}
	}
	return -1, -1
}

// ConcatEmbeddings joins embeddings files (shards) made by the same model; an image id present twice
// is an error.
func ConcatEmbeddings(parts ...*Embeddings) (*Embeddings, error) {
	if len(parts) == 0 {
		return nil, errors.New("proto: no embeddings")
	}
	out := &Embeddings{Dim: parts[0].Dim, Model: parts[0].Model, Split: parts[0].Split, Classes: parts[0].Classes, Root: parts[0].Root}
	withPaths := true
	for _, p := range parts {
		withPaths = withPaths && p.Paths != nil && p.Root == out.Root
	}
	seen := map[int64]bool{}
	for i, p := range parts {
		if p.Dim != out.Dim || p.Model != out.Model {
			return nil, fmt.Errorf("proto: embeddings part %d: dimension %d, model %q; part 0: %d, %q", i, p.Dim, p.Model, out.Dim, out.Model)
		}
		for _, id := range p.IDs {
			if seen[id] {
				return nil, fmt.Errorf("proto: embeddings part %d: image %d is also in an earlier part", i, id)
			}
			seen[id] = true
		}
		if len(parts) == 1 {
			return p, nil
		}
		out.IDs = append(out.IDs, p.IDs...)
		out.Labels = append(out.Labels, p.Labels...)
		out.Vectors = append(out.Vectors, p.Vectors...)
		out.Failed = append(out.Failed, p.Failed...)
		if withPaths {
			out.Paths = append(out.Paths, p.Paths...)
		}
		if len(out.Classes) == 0 {
			out.Classes = p.Classes
		}
	}
	return out, nil
}
