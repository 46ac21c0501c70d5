package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"protoherb/imageio"
	"protoherb/nn"
	"protoherb/torch"
)

// Index holds the embeddings of the training specimens, so that an identification can show the
// specimens of the top species nearest to the query, with thumbnails.
//
// File layout (safetensors): "embeddings" F32 [N,D], "labels" I64 [N] (class ids, as in the
// prototypes); metadata "paths", a JSON array of N image paths relative to the images root, and
// optionally "image_ids", a JSON array of N ids (default: the row number).
type Index struct {
	dim     int
	emb     []float32
	labels  []int64
	paths   []string
	ids     []string
	byClass map[int64][]int
	root    string

	mu     sync.Mutex
	thumbs map[int][]byte
}

// Specimen is a training image near a query.
type Specimen struct {
	Row      int     `json:"row"`
	ID       string  `json:"id"`
	Distance float64 `json:"distance"`
	Thumb    string  `json:"thumbnail_url"`
}

// WriteIndex writes an index file (atomically).
func WriteIndex(path string, emb []float32, dim int, labels []int64, paths, ids []string) error {
	n := len(labels)
	if len(emb) != n*dim || len(paths) != n || (ids != nil && len(ids) != n) {
		return fmt.Errorf("index %s: %d values, %d labels, %d paths, %d ids for dim %d", path, len(emb), n, len(paths), len(ids), dim)
	}
	meta := map[string]string{}
	b, _ := json.Marshal(paths)
	meta["paths"] = string(b)
	if ids != nil {
		b, _ = json.Marshal(ids)
		meta["image_ids"] = string(b)
	}
	sc := torch.NewScope()
	defer sc.Close()
	return nn.SaveSafetensors(path, []nn.Param{
		{Name: "embeddings", T: torch.FromFloat32(sc, emb, int64(n), int64(dim))},
		{Name: "labels", T: torch.FromInt64(sc, labels, int64(n))},
	}, meta)
}

// OpenIndex reads an index file; images are looked up under root.
func OpenIndex(path, root string) (*Index, error) {
	ps, meta, err := nn.ReadSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	defer nn.FreeParams(ps)
	var et, lt *torch.Tensor
	for _, p := range ps {
		switch p.Name {
		case "embeddings":
			et = p.T
		case "labels":
			lt = p.T
		}
	}
	if et == nil || lt == nil {
		return nil, fmt.Errorf("%s: want tensors embeddings [N,D] and labels [N]", path)
	}
	sh := et.Shape()
	if len(sh) != 2 {
		return nil, fmt.Errorf("%s: embeddings have shape %v, want [N, D]", path, sh)
	}
	x := &Index{dim: int(sh[1]), root: root, byClass: map[int64][]int{}, thumbs: map[int][]byte{}}
	if x.emb, err = et.ToDType(torch.Float32).Float32s(); err != nil {
		return nil, fmt.Errorf("%s: embeddings: %w", path, err)
	}
	if x.labels, err = lt.ToDType(torch.Int64).Int64s(); err != nil {
		return nil, fmt.Errorf("%s: labels: %w", path, err)
	}
	n := int(sh[0])
	if len(x.labels) != n {
		return nil, fmt.Errorf("%s: %d embeddings but %d labels", path, n, len(x.labels))
	}
	if err := json.Unmarshal([]byte(meta["paths"]), &x.paths); err != nil || len(x.paths) != n {
		return nil, fmt.Errorf("%s: metadata paths must list %d image paths (%v)", path, n, err)
	}
	if s := meta["image_ids"]; s != "" {
		if err := json.Unmarshal([]byte(s), &x.ids); err != nil || len(x.ids) != n {
			return nil, fmt.Errorf("%s: metadata image_ids must list %d ids (%v)", path, n, err)
		}
	}
	for i, l := range x.labels {
		x.byClass[l] = append(x.byClass[l], i)
	}
	return x, nil
}

// Len is the number of specimens.
func (x *Index) Len() int { return len(x.labels) }

// Dim is the embedding size.
func (x *Index) Dim() int { return x.dim }

func (x *Index) id(row int) string {
	if x.ids != nil {
		return x.ids[row]
	}
	return fmt.Sprint(row)
}

// Nearest returns the n specimens of class c nearest to q (squared L2), nearest first.
func (x *Index) Nearest(q []float32, c int64, n int) []Specimen {
	rows := x.byClass[c]
	out := make([]Specimen, 0, len(rows))
	for _, r := range rows {
		v := x.emb[r*x.dim : (r+1)*x.dim]
		var d float64
		for j, a := range q {
			e := float64(a - v[j])
			d += e * e
		}
		out = append(out, Specimen{Row: r, ID: x.id(r), Distance: d, Thumb: fmt.Sprintf("/v1/specimens/%d/thumbnail", r)})
	}
	slices.SortFunc(out, func(a, b Specimen) int {
		if a.Distance != b.Distance {
			if a.Distance < b.Distance {
				return -1
			}
			return 1
		}
		return a.Row - b.Row
	})
	return out[:min(n, len(out))]
}

const thumbSide = 256

// Thumbnail returns a JPEG of the specimen at most thumbSide pixels on its longer side.
func (x *Index) Thumbnail(row int) ([]byte, error) {
	if row < 0 || row >= len(x.paths) {
		return nil, fmt.Errorf("no specimen %d", row)
	}
	x.mu.Lock()
	b, ok := x.thumbs[row]
	x.mu.Unlock()
	if ok {
		return b, nil
	}
	rel := filepath.Clean(filepath.FromSlash(x.paths[row]))
	if filepath.IsAbs(rel) || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("specimen %d: path %q leaves the images root", row, x.paths[row])
	}
	p := filepath.Join(x.root, rel)
	m, err := imageio.DecodeFile(p, imageio.DecodeOptions{MinW: thumbSide / 2, MinH: thumbSide / 2})
	if err != nil {
		return nil, err
	}
	s := float64(thumbSide) / float64(max(m.W, m.H))
	ow, oh := m.W, m.H
	if s < 1 {
		ow, oh = max(1, int(float64(m.W)*s+0.5)), max(1, int(float64(m.H)*s+0.5))
	}
	px := make([]uint8, ow*oh*m.C)
	var rs imageio.Resampler
	rs.Resample(m, imageio.Box{X0: 0, Y0: 0, X1: float64(m.W), Y1: float64(m.H)}, ow, oh, px)
	img := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for i := range ow * oh {
		for c := range 3 {
			img.Pix[4*i+c] = px[i*m.C+min(c, m.C-1)]
		}
		img.Pix[4*i+3] = 255
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		return nil, fmt.Errorf("%s: thumbnail: %w", p, err)
	}
	x.mu.Lock()
	if len(x.thumbs) >= 2048 {
		for k := range x.thumbs { // evict one arbitrary entry: memory stays bounded
			delete(x.thumbs, k)
			break
		}
	}
	x.thumbs[row] = buf.Bytes()
	x.mu.Unlock()
	return buf.Bytes(), nil
}
