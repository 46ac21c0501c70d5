package train

import (
	"context"
	"errors"
	"fmt"
	"io"

	"protoherb/dataset"
	"protoherb/imageio"
	"protoherb/progress"
)

// Images serves model input for samples of a dataset: N×C×S×S float32 rows, one per requested
// sample position, in request order.
type Images interface {
	// Load returns the images of the samples at positions idx of the dataset. seed drives the
	// augmentation (if any), so a step's input depends only on the seed.
	Load(ctx context.Context, idx []int, seed uint64) ([]float32, error)
	// Shape returns C and S of one image.
	Shape() (c, s int)
}

// ImageOptions configure how samples become tensors.
type ImageOptions struct {
	Size, Channels int
	Invert         bool
	Augment        bool
	Fit            bool // whole image at its aspect, padded (imageio.Transform.Fit)
	Squash         bool // whole image stretched to the square (imageio.Transform.Squash)
	// InMemory decodes every image once (unaugmented) and serves batches from RAM.
	InMemory bool
	Workers  int
	Bar      progress.Options
	// OnBad says what an image that cannot be loaded does (badimage.go): Skip (the zero value)
	// replaces it by another of its class, Fail stops with an error naming the file.
	OnBad imageio.BadPolicy
	// BadList is the file listing the images skipped (a run's BadImagesFile; "" = none).
	BadList string
}

// transform returns the image transform of the options: a centre square (Omniglot: the whole
// drawing) resized to Size, or with Augment a random resized crop, horizontal flip and colour jitter.
func (o ImageOptions) transform() imageio.Transform {
	t := imageio.Transform{Size: o.Size, Channels: o.Channels, Invert: o.Invert, Fit: o.Fit, Squash: o.Squash}
	if o.Augment {
		t.RandomCrop, t.Scale, t.HFlip = true, [2]float64{0.35, 1}, true // Fit: its zoom and shift instead
		if o.Channels == 3 {
			t.Jitter = imageio.ColorJitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4}
		}
	}
	return t
}

// NewImages returns the image source for the samples at positions subset (nil = all) of d. In memory
// it decodes every distinct file once (a rotated Omniglot class shares its files with the unrotated
// one) and applies each sample's rotation when a batch is built; bad images are then left out (usable
// lists the positions that can be served). From files, a bad image is replaced by another of its
// class (o.OnBad, badimage.go).
func NewImages(ctx context.Context, d *dataset.Dataset, subset []int, o ImageOptions) (Images, error) {
	if o.InMemory && !o.Augment {
		return newMemImages(ctx, d, subset, o)
	}
	t := o.transform()
	l, err := imageio.NewLoader(imageio.LoaderOptions{Workers: o.Workers, BatchSize: 1, Transform: t, OnBad: imageio.Skip})
	if err != nil {
		return nil, err
	}
	return &fileImages{d: d, l: l, c: o.Channels, s: o.Size, bad: newBadImages(d, subset, o.OnBad, o.BadList)}, nil
}

// fileImages decodes every batch from the files (with augmentation when configured).
type fileImages struct {
	d    *dataset.Dataset
	l    *imageio.Loader
	c, s int
	bad  *badImages
}

func (f *fileImages) Shape() (int, int) { return f.c, f.s }

func (f *fileImages) Load(ctx context.Context, idx []int, seed uint64) ([]float32, error) {
	xs, _, err := f.loadReplacing(ctx, idx, seed)
	return xs, err
}

// loadReplacing loads the images of idx, replacing those that cannot be loaded (badimage.go), and
// returns how many it replaced.
func (f *fileImages) loadReplacing(ctx context.Context, idx []int, seed uint64) ([]float32, int, error) {
	b, err := f.l.Load(ctx, imageio.ItemsFromDataset(f.d, idx), seed)
	if err != nil {
		return nil, 0, err
	}
	if len(b.Bad) == 0 {
		return b.X, 0, nil
	}
	if f.bad.fail {
		return nil, 0, fmt.Errorf("%w: %w", errBadImage, b.Bad[0])
	}
	elem := f.c * f.s * f.s
	xs := make([]float32, len(idx)*elem)
	for r, j := range b.Index {
		copy(xs[j*elem:(j+1)*elem], b.X[r*elem:(r+1)*elem])
	}
	for _, bi := range b.Bad {
		f.bad.report(bi)
		if err := f.bad.replace(ctx, f.l, idx, bi.Index, seed, xs[bi.Index*elem:(bi.Index+1)*elem]); err != nil {
			return nil, 0, err
		}
	}
	return xs, len(b.Bad), nil
}

// memImages holds every distinct image decoded once, unrotated.
type memImages struct {
	c, s   int
	pix    []float32 // images one after another, C×S×S each
	slot   []int32   // per sample position: its image in pix, -1 when not held (bad or outside the subset)
	rotate []int8    // per sample position: quarter turns counter-clockwise
}

func newMemImages(ctx context.Context, d *dataset.Dataset, subset []int, o ImageOptions) (*memImages, error) {
	if subset == nil {
		subset = make([]int, len(d.Samples))
		for i := range subset {
			subset[i] = i
		}
	}
	m := &memImages{c: o.Channels, s: o.Size, slot: make([]int32, len(d.Samples)), rotate: make([]int8, len(d.Samples))}
	for i := range m.slot {
		m.slot[i] = -1
	}
	pathSlot := map[string]int32{}
	var items []imageio.Item
	for _, i := range subset {
		smp := d.Samples[i]
		if smp.Rotate%90 != 0 {
			return nil, fmt.Errorf("%s: rotation %d is not a multiple of 90 degrees", smp.Path, smp.Rotate)
		}
		m.rotate[i] = int8(((smp.Rotate/90)%4 + 4) % 4)
		k, ok := pathSlot[smp.Path]
		if !ok {
			k = int32(len(items))
			pathSlot[smp.Path] = k
			items = append(items, imageio.Item{Path: smp.Path})
		}
		m.slot[i] = k
	}
	elem := o.Channels * o.Size * o.Size
	l, err := imageio.NewLoader(imageio.LoaderOptions{Workers: o.Workers, BatchSize: 256, Transform: o.transform(), OnBad: imageio.Skip})
	if err != nil {
		return nil, err
	}
	m.pix = make([]float32, len(items)*elem)
	ok := make([]bool, len(items))
	bar := progress.New(int64(len(items)), "decode images into memory", withUnit(o.Bar, "img"))
	st := l.Stream(ctx, items, 0)
	defer st.Close()
	for {
		b, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		for r, j := range b.Index {
			copy(m.pix[j*elem:(j+1)*elem], b.X[r*elem:(r+1)*elem])
			ok[j] = true
		}
		bar.Add(b.N + len(b.Bad))
	}
	bar.Finish()
	bad := st.Bad()
	if o.OnBad == imageio.Fail && len(bad) > 0 {
		return nil, fmt.Errorf("%w: %w (and %d more)", errBadImage, bad[0], len(bad)-1)
	}
	report := newBadImages(d, subset, o.OnBad, o.BadList)
	for _, bi := range bad {
		report.report(bi)
	}
	for i, k := range m.slot {
		if k >= 0 && !ok[k] {
			m.slot[i] = -1
		}
	}
	return m, nil
}

func withUnit(o progress.Options, unit string) progress.Options { o.Unit = unit; return o }

func (m *memImages) Shape() (int, int) { return m.c, m.s }

// Usable reports whether the image of sample position i can be served.
func (m *memImages) usable(i int) bool { return m.slot[i] >= 0 }

func (m *memImages) Load(ctx context.Context, idx []int, _ uint64) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := m.s
	plane := s * s
	elem := m.c * plane
	out := make([]float32, len(idx)*elem)
	for r, i := range idx {
		if i < 0 || i >= len(m.slot) || m.slot[i] < 0 {
			return nil, fmt.Errorf("sample %d is not held in memory", i)
		}
		src := m.pix[int(m.slot[i])*elem : int(m.slot[i]+1)*elem]
		dst := out[r*elem : (r+1)*elem]
		rotate(dst, src, m.c, s, int(m.rotate[i]))
	}
	return out, nil
}

// rotate copies c planes of s×s from src to dst turned by rot quarter turns counter-clockwise, with
// imageio's convention: output (x, y) reads input (s-1-y, x) for one turn.
func rotate(dst, src []float32, c, s, rot int) {
	if rot == 0 {
		copy(dst, src)
		return
	}
	plane := s * s
	for k := 0; k < c; k++ {
		d, in := dst[k*plane:(k+1)*plane], src[k*plane:(k+1)*plane]
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				var sx, sy int
				switch rot {
				case 1:
					sx, sy = s-1-y, x
				case 2:
					sx, sy = s-1-x, s-1-y
				default:
					sx, sy = y, s-1-x
				}
				d[y*s+x] = in[sy*s+sx]
			}
		}
	}
}

// usablePositions filters positions to those the source can serve (file sources serve all).
func usablePositions(src Images, pos []int) []int {
	m, ok := src.(*memImages)
	if !ok {
		return pos
	}
	out := pos[:0:0]
	for _, i := range pos {
		if m.usable(i) {
			out = append(out, i)
		}
	}
	return out
}
