package serve

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"protoherb/imageio"
	"protoherb/proto"
)

// Index holds the embeddings of the training specimens, so that an identification can show the
// specimens of the top species nearest to the query, with thumbnails. Its file is what `protoherb
// embed` writes (package proto's embeddings file): rows with their image ids, class ids and image
// paths relative to the dataset's folder.
type Index struct {
	dim     int
	emb     []float32
	labels  []int64
	paths   []string
	ids     []int64
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

// OpenIndex reads an embeddings file written by `protoherb embed`; images are looked up under
// root, or when root is "" under the dataset folder recorded in the file, else the file's folder.
// Rows of images that could not be read, or without a class, are left out.
func OpenIndex(path, root string) (*Index, error) {
	e, err := proto.LoadEmbeddings(path)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if e.Paths == nil {
		return nil, fmt.Errorf("index %s: no image paths in the file (written by an older protoherb embed: embed again)", path)
	}
	if root == "" {
		root = filepath.Dir(path)
		if st, err := os.Stat(e.Root); err == nil && st.IsDir() {
			root = e.Root
		}
	}
	x := &Index{dim: e.Dim, emb: e.Vectors, labels: e.Labels, paths: e.Paths, ids: e.IDs, root: root,
		byClass: map[int64][]int{}, thumbs: map[int][]byte{}}
	failed := make(map[int64]bool, len(e.Failed))
	for _, id := range e.Failed {
		failed[id] = true
	}
	for i, l := range x.labels {
		if l >= 0 && !failed[x.ids[i]] {
			x.byClass[l] = append(x.byClass[l], i)
		}
	}
	return x, nil
}

// Len is the number of specimens.
func (x *Index) Len() int { return len(x.labels) }

// Dim is the embedding size.
func (x *Index) Dim() int { return x.dim }

func (x *Index) id(row int) string { return strconv.FormatInt(x.ids[row], 10) }

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
	p := filepath.Clean(filepath.FromSlash(x.paths[row]))
	if !filepath.IsAbs(p) {
		if p == ".." || strings.HasPrefix(p, ".."+string(filepath.Separator)) {
			return nil, fmt.Errorf("specimen %d: path %q leaves the images root", row, x.paths[row])
		}
		p = filepath.Join(x.root, p)
	}
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
