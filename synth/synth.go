// Package synth generates a synthetic herbarium in the exact Herbarium 2020 (FGVC7) layout: procedural
// specimen sheets as JPEG, train and test metadata (with the Latin-1 names of the original) and the
// true test labels, so that every stage of protoherb can run on a fresh machine without downloads.
//
// Species traits (leaf shape, margin, venation, arrangement, colours, sizes, flowers) are inherited
// family → genus → species, so relatives look alike; each specimen varies in pose, scale, damage,
// discoloration, scan lighting and label text. Specimen counts per species follow a power law, so
// there are species with a single train image as in the real data. Output is byte-identical for a
// seed whatever the number of workers: every image draws from its own generator, seeded from the
// seed and the image id.
package synth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"protoherb/progress"
)

// Config sets what Generate writes. Start from DefaultConfig and change fields.
type Config struct {
	// Out is the output directory; Generate writes Out/nybg2020/... and Out/solution.csv.
	Out string
	// Species, Genera and Families size the taxonomy (Species >= Genera >= Families >= 1).
	Species, Genera, Families int
	// MinPerClass and MaxPerClass bound the number of specimens (train and test together) per
	// species; counts between follow a power law with tail index Alpha (0 means 1).
	MinPerClass, MaxPerClass int
	Alpha                    float64
	// TestPerClass caps the test images per species (0: no test set). A species with n >= 2
	// specimens has 1 + Binomial(n-1, TestFraction) of them in test, at most TestPerClass and n-1,
	// so every species keeps at least one train image and the smallest often keep exactly one.
	TestPerClass int
	TestFraction float64
	// Seed makes the output reproducible.
	Seed uint64
	// Size is the long (vertical) side of every sheet in pixels; the short side is about 2/3 of it.
	Size int
	// Quality is the JPEG quality (0 means 90).
	Quality int
	// Workers render images in parallel (0 means GOMAXPROCS).
	Workers int
	// MetadataOnly writes the metadata and solution without rendering any image (for scale tests of
	// the readers).
	MetadataOnly bool
	// Progress configures the progress bar.
	Progress progress.Options
}

// DefaultConfig is a small long-tailed herbarium: 300 species in 80 genera and 24 families, 3 to 60
// specimens per species (seed 1: 2,030 train and 682 test images, 1 to 54 train images per species),
// at most 5 test images per species, at the real data's 1000 px (about 20 ms of CPU per image,
// 110 kB each).
func DefaultConfig() Config {
	return Config{
		Species: 300, Genera: 80, Families: 24,
		MinPerClass: 3, MaxPerClass: 60, Alpha: 1,
		TestPerClass: 5, TestFraction: 0.2,
		Seed: 1, Size: 1000, Quality: 90,
	}
}

// DemoConfig is DefaultConfig at 320 px, enough for models that train at 64–128 px: about 3 ms of
// CPU per image, so the whole herbarium takes seconds on 2 cores.
func DemoConfig() Config {
	c := DefaultConfig()
	c.Size = 320
	return c
}

// Result says what Generate wrote.
type Result struct {
	Dir           string // Config.Out
	Root          string // Dir/nybg2020, the folder a Herbarium 2020 reader opens
	TrainMetadata string // Root/train/metadata.json
	TestMetadata  string // Root/test/metadata.json
	Solution      string // Dir/solution.csv: Id,Predicted with the true category of every test image
	// Categories are the species by id, with UTF-8 names.
	Categories []Category
	// Regions are the region names by region id.
	Regions []string
	// TrainPerClass and TestPerClass count the images of each category.
	TrainPerClass, TestPerClass []int
	TrainImages, TestImages     int
}

const (
	splitTrain = 0
	splitTest  = 1
)

// plan is everything about a run except the pixels: the taxonomy and the category of every image,
// four bytes per image, so it scales to the full 32,094 species and a million images.
type plan struct {
	cfg        Config
	tax        *taxonomy
	trainClass []int32 // category by train image id
	testClass  []int32 // category by test image id
	trainPer   []int
	testPer    []int
}

func (c *Config) check() error {
	switch {
	case c.Out == "":
		return errors.New("synth: no output directory")
	case c.MinPerClass < 1 || c.MaxPerClass < c.MinPerClass:
		return fmt.Errorf("synth: need 1 <= min-per-class <= max-per-class, have %d and %d", c.MinPerClass, c.MaxPerClass)
	case c.TestPerClass < 0:
		return fmt.Errorf("synth: negative test-per-class %d", c.TestPerClass)
	case c.TestFraction < 0 || c.TestFraction > 1:
		return fmt.Errorf("synth: test fraction %g is outside [0,1]", c.TestFraction)
	case c.Alpha < 0:
		return fmt.Errorf("synth: negative power-law exponent %g", c.Alpha)
	case c.Size < 64 || c.Size > 8000:
		return fmt.Errorf("synth: size %d px is outside [64, 8000]", c.Size)
	case c.Quality < 0 || c.Quality > 100:
		return fmt.Errorf("synth: JPEG quality %d is outside [1, 100]", c.Quality)
	case c.Species > 1_000_000:
		return fmt.Errorf("synth: %d species is more than the train path scheme can hold", c.Species)
	}
	return nil
}

func newPlan(cfg Config) (*plan, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = 1
	}
	if cfg.Quality == 0 {
		cfg.Quality = 90
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	r := rand.New(rand.NewPCG(mix(cfg.Seed, 0x7a7), mix(cfg.Seed, 0x7a8)))
	tax, err := newTaxonomy(r, cfg.Species, cfg.Genera, cfg.Families)
	if err != nil {
		return nil, err
	}
	p := &plan{cfg: cfg, tax: tax, trainPer: make([]int, cfg.Species), testPer: make([]int, cfg.Species)}
	nTrain, nTest := 0, 0
	for c, n := range specimenCounts(r, cfg.Species, cfg.MinPerClass, cfg.MaxPerClass, cfg.Alpha) {
		k := testCount(r, n, cfg.TestPerClass, cfg.TestFraction)
		p.trainPer[c], p.testPer[c] = n-k, k
		nTrain += n - k
		nTest += k
	}
	// Image ids are a shuffle of the class-ordered lists, so nothing about the class can be read from
	// an id or from file order.
	p.trainClass = make([]int32, 0, nTrain)
	p.testClass = make([]int32, 0, nTest)
	for c := range cfg.Species {
		for range p.trainPer[c] {
			p.trainClass = append(p.trainClass, int32(c))
		}
		for range p.testPer[c] {
			p.testClass = append(p.testClass, int32(c))
		}
	}
	r.Shuffle(nTrain, func(i, j int) { p.trainClass[i], p.trainClass[j] = p.trainClass[j], p.trainClass[i] })
	r.Shuffle(nTest, func(i, j int) { p.testClass[i], p.testClass[j] = p.testClass[j], p.testClass[i] })
	return p, nil
}

// mix is splitmix64 of a^b's golden-ratio spread: distinct, well-mixed generator seeds from small
// integers.
func mix(a, b uint64) uint64 {
	z := a + 0x9e3779b97f4a7c15*(b+1)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// imageRand is the generator of one image: it depends only on the seed, the split and the id.
func imageRand(seed uint64, split, id int) *rand.Rand {
	return rand.New(rand.NewPCG(mix(seed, uint64(split)<<40|uint64(id)), mix(^seed, uint64(id))))
}

// header is what the metadata says about an image; it comes from the first draws of the image's
// generator, so metadata can be written without rendering.
type header struct {
	width, height, region int
}

func (p *plan) header(r *rand.Rand, class int) header {
	size := p.cfg.Size
	h := header{height: size, width: int(float64(size) * (0.64 + 0.06*r.Float64()))}
	h.region = p.tax.region[class]
	if r.Float64() < 0.15 {
		h.region = r.IntN(len(regions))
	}
	return h
}

func (p *plan) class(split, id int) int {
	if split == splitTrain {
		return int(p.trainClass[id])
	}
	return int(p.testClass[id])
}

// trainFileName is the path of a train image relative to nybg2020/train.
func trainFileName(category, id int) string {
	return fmt.Sprintf("images/%03d/%02d/%d.jpg", category/100, category%100, id)
}

// testFileName is the path of a test image relative to nybg2020/test.
func testFileName(id int) string {
	return fmt.Sprintf("images/%03d/%d.jpg", id/1000, id)
}

func (p *plan) fileName(split, id int) string {
	if split == splitTrain {
		return trainFileName(p.class(split, id), id)
	}
	return testFileName(id)
}

// Generate writes the herbarium that cfg describes. The images come first and the metadata last, so
// an interrupted run (ctx cancelled) leaves no metadata that names missing images.
func Generate(ctx context.Context, cfg Config) (*Result, error) {
	p, err := newPlan(cfg)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(cfg.Out, "nybg2020")
	res := &Result{
		Dir: cfg.Out, Root: root,
		TrainMetadata: filepath.Join(root, "train", "metadata.json"),
		TestMetadata:  filepath.Join(root, "test", "metadata.json"),
		Solution:      filepath.Join(cfg.Out, "solution.csv"),
		Categories:    p.tax.categories,
		Regions:       slices.Clone(regions),
		TrainPerClass: p.trainPer, TestPerClass: p.testPer,
		TrainImages: len(p.trainClass), TestImages: len(p.testClass),
	}
	for _, d := range []string{filepath.Join(root, "train"), filepath.Join(root, "test")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("synth: %w", err)
		}
	}
	if !cfg.MetadataOnly {
		if err := p.renderAll(ctx, root); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.writeTrainMetadata(res.TrainMetadata); err != nil {
		return nil, err
	}
	if err := p.writeTestMetadata(res.TestMetadata); err != nil {
		return nil, err
	}
	if err := p.writeSolution(res.Solution); err != nil {
		return nil, err
	}
	return res, nil
}

// renderAll draws and writes every image with cfg.Workers goroutines.
func (p *plan) renderAll(ctx context.Context, root string) error {
	// Directories first, so workers only write files.
	for c := range p.cfg.Species {
		if p.trainPer[c] > 0 {
			d := filepath.Join(root, "train", fmt.Sprintf("images/%03d/%02d", c/100, c%100))
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("synth: %w", err)
			}
		}
	}
	for id := 0; id < len(p.testClass); id += 1000 {
		if err := os.MkdirAll(filepath.Join(root, "test", fmt.Sprintf("images/%03d", id/1000)), 0o755); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}

	total := len(p.trainClass) + len(p.testClass)
	bar := progress.New(int64(total), "synth", withUnit(p.cfg.Progress, "img"))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range p.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWorker()
			for j := range jobs {
				split, id := splitTrain, j
				if j >= len(p.trainClass) {
					split, id = splitTest, j-len(p.trainClass)
				}
				dir := "train"
				if split == splitTest {
					dir = "test"
				}
				path := filepath.Join(root, dir, p.fileName(split, id))
				if err := w.writeImage(p, split, id, path); err != nil {
					cancel(err)
					return
				}
				bar.Add(1)
			}
		}()
	}
feed:
	for j := range total {
		select {
		case jobs <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	bar.Finish()
	return nil
}

func withUnit(o progress.Options, unit string) progress.Options {
	if o.Unit == "" {
		o.Unit = unit
	}
	return o
}
