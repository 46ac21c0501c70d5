package synth

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"protoherb/progress"
)

// tiny is a small, fast herbarium for tests.
func tiny(out string) Config {
	cfg := DefaultConfig()
	cfg.Out = out
	cfg.Species, cfg.Genera, cfg.Families = 30, 10, 4
	cfg.MaxPerClass = 12
	cfg.TestPerClass = 3
	cfg.Size = 96
	cfg.Seed = 7
	cfg.Progress = progress.Options{Quiet: true}
	return cfg
}

// latin1ToUTF8 is the transcoding a reader of the 2020 metadata must do.
func latin1ToUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/16)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return out
}

type trainMeta struct {
	Annotations []struct {
		CategoryID int `json:"category_id"`
		ID         int `json:"id"`
		ImageID    int `json:"image_id"`
		RegionID   int `json:"region_id"`
	} `json:"annotations"`
	Categories []struct {
		ID     int    `json:"id"`
		Name   string `json:"name"`
		Family string `json:"family"`
		Genus  string `json:"genus"`
	} `json:"categories"`
	Images  []imageMeta `json:"images"`
	Regions []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"regions"`
}

type imageMeta struct {
	FileName string `json:"file_name"`
	Height   int    `json:"height"`
	ID       int    `json:"id"`
	License  int    `json:"license"`
	Width    int    `json:"width"`
}

// readMeta parses a metadata file as Latin-1 and checks it holds exactly the given top-level keys.
func readMeta(t *testing.T, path string, into any, keys ...string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := latin1ToUTF8(raw)
	var top map[string]json.RawMessage
	if err := json.Unmarshal(text, &top); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var got []string
	for k := range top {
		got = append(got, k)
	}
	sort.Strings(got)
	if !slices.Equal(got, keys) {
		t.Fatalf("%s: top-level keys %v, want %v", path, got, keys)
	}
	if err := json.Unmarshal(text, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return raw
}

func TestGenerateLayout(t *testing.T) {
	cfg := tiny(t.TempDir())
	res, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}

	var tm trainMeta
	raw := readMeta(t, res.TrainMetadata, &tm, "annotations", "categories", "images", "info", "licenses", "regions")
	// Names are Latin-1 bytes, so the file is not UTF-8, and the UTF-8 spellings are absent.
	if utf8.Valid(raw) {
		t.Error("train metadata is valid UTF-8; want raw Latin-1 names")
	}
	for _, c := range []string{"×", "ë", "æ"} {
		if !bytes.Contains(raw, []byte{byte([]rune(c)[0])}) {
			t.Errorf("train metadata lacks the Latin-1 byte of %q", c)
		}
		if bytes.Contains(raw, []byte(c)) {
			t.Errorf("train metadata holds %q as UTF-8", c)
		}
	}
	if !bytes.HasPrefix(raw, []byte(`{"annotations": [{"category_id": `)) {
		t.Errorf("metadata does not start like Python's json.dump output: %.60s", raw)
	}

	// Categories round-trip with exact names.
	if len(tm.Categories) != cfg.Species {
		t.Fatalf("%d categories, want %d", len(tm.Categories), cfg.Species)
	}
	for i, c := range tm.Categories {
		want := res.Categories[i]
		if c.ID != want.ID || c.Name != want.Name || c.Genus != want.Genus || c.Family != want.Family {
			t.Fatalf("category %d: got %+v, want %+v", i, c, want)
		}
		if !strings.HasPrefix(c.Name, c.Genus+" ") || !(strings.HasSuffix(c.Family, "aceae") || strings.HasSuffix(c.Family, "aceæ")) {
			t.Errorf("category %d: implausible taxonomy %+v", i, c)
		}
	}

	// Train images: ids 0..n-1, one annotation each, path scheme, files exist with the stated size.
	if len(tm.Images) != res.TrainImages || len(tm.Annotations) != res.TrainImages {
		t.Fatalf("%d images, %d annotations, want %d", len(tm.Images), len(tm.Annotations), res.TrainImages)
	}
	perClass := make([]int, cfg.Species)
	for i, a := range tm.Annotations {
		im := tm.Images[i]
		if a.ID != i || a.ImageID != i || im.ID != i {
			t.Fatalf("annotation %d: ids %d/%d, image id %d", i, a.ID, a.ImageID, im.ID)
		}
		if a.RegionID < 0 || a.RegionID >= len(tm.Regions) {
			t.Fatalf("annotation %d: region %d out of range", i, a.RegionID)
		}
		perClass[a.CategoryID]++
		want := fmt.Sprintf("images/%03d/%02d/%d.jpg", a.CategoryID/100, a.CategoryID%100, i)
		if im.FileName != want {
			t.Fatalf("image %d: file_name %q, want %q", i, im.FileName, want)
		}
		checkImage(t, filepath.Join(res.Root, "train", im.FileName), im)
	}
	if !slices.Equal(perClass, res.TrainPerClass) {
		t.Errorf("train counts per class %v, result says %v", perClass, res.TrainPerClass)
	}

	// Test images and the solution.
	var te struct {
		Images []imageMeta `json:"images"`
	}
	readMeta(t, res.TestMetadata, &te, "images", "info", "licenses")
	if len(te.Images) != res.TestImages {
		t.Fatalf("%d test images, want %d", len(te.Images), res.TestImages)
	}
	for i, im := range te.Images {
		if want := fmt.Sprintf("images/%03d/%d.jpg", i/1000, i); im.ID != i || im.FileName != want {
			t.Fatalf("test image %d: id %d file_name %q, want %q", i, im.ID, im.FileName, want)
		}
		checkImage(t, filepath.Join(res.Root, "test", im.FileName), im)
	}
	f, err := os.Open(res.Solution)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != res.TestImages+1 || !slices.Equal(rows[0], []string{"Id", "Predicted"}) {
		t.Fatalf("solution.csv: %d rows, header %v", len(rows), rows[0])
	}
	testPer := make([]int, cfg.Species)
	for i, row := range rows[1:] {
		id, _ := strconv.Atoi(row[0])
		c, err := strconv.Atoi(row[1])
		if id != i || err != nil || c < 0 || c >= cfg.Species {
			t.Fatalf("solution.csv row %d: %v", i+1, row)
		}
		testPer[c]++
	}
	if !slices.Equal(testPer, res.TestPerClass) {
		t.Errorf("test counts per class %v, result says %v", testPer, res.TestPerClass)
	}
	checkCounts(t, cfg, res)

	// Nothing but images and metadata was left behind (no temporary files).
	filepath.WalkDir(cfg.Out, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".jpg") && !strings.HasSuffix(p, ".json") && !strings.HasSuffix(p, ".csv") {
			t.Errorf("stray file %s", p)
		}
		return nil
	})
}

func checkImage(t *testing.T, path string, im imageMeta) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := jpeg.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if c.Width != im.Width || c.Height != im.Height {
		t.Fatalf("%s: %dx%d, metadata says %dx%d", path, c.Width, c.Height, im.Width, im.Height)
	}
}

// checkCounts asserts the per-class bounds.
func checkCounts(t *testing.T, cfg Config, res *Result) {
	t.Helper()
	train, test := 0, 0
	for c := range cfg.Species {
		n, k := res.TrainPerClass[c], res.TestPerClass[c]
		if n+k < cfg.MinPerClass || n+k > cfg.MaxPerClass || n < 1 || k > cfg.TestPerClass {
			t.Fatalf("class %d: %d train + %d test, want %d..%d in all, >=1 train, <=%d test",
				c, n, k, cfg.MinPerClass, cfg.MaxPerClass, cfg.TestPerClass)
		}
		train += n
		test += k
	}
	if train != res.TrainImages || test != res.TestImages {
		t.Fatalf("counts sum to %d/%d, result says %d/%d", train, test, res.TrainImages, res.TestImages)
	}
}

func TestLongTailAtScale(t *testing.T) {
	// The full Herbarium 2020 taxonomy, metadata only: category ids above 32,000 still fit the path
	// scheme, and the counts have a long tail with single-image classes and a populated head.
	cfg := DefaultConfig()
	cfg.Out = t.TempDir()
	cfg.Species, cfg.Genera, cfg.Families = 32094, 3678, 310
	cfg.MinPerClass, cfg.MaxPerClass, cfg.TestPerClass = 3, 200, 10
	cfg.MetadataOnly = true
	cfg.Progress = progress.Options{Quiet: true}
	res, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, cfg, res)
	ones, head := 0, 0
	for c, n := range res.TrainPerClass {
		if n == 1 {
			ones++
		}
		if n+res.TestPerClass[c] >= 100 {
			head++
		}
	}
	mean := float64(res.TrainImages) / float64(cfg.Species)
	sorted := slices.Clone(res.TrainPerClass)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	t.Logf("train %d, test %d, mean %.1f, median %d, %d single-image classes, %d classes >= 100",
		res.TrainImages, res.TestImages, mean, median, ones, head)
	if ones < 100 || head < 100 || float64(median) >= mean {
		t.Errorf("not a long tail: %d single-image classes, %d classes >= 100, median %d, mean %.1f", ones, head, median, mean)
	}
	raw, err := os.ReadFile(res.TrainMetadata)
	if err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf(`"file_name": "images/320/%02d/`, 32093%100)
	if !bytes.Contains(raw, []byte(last)) {
		t.Errorf("no image of category 32093 under %s", last)
	}
	if _, err := os.Stat(filepath.Join(res.Root, "train", "images")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("metadata-only run made an images folder (%v)", err)
	}
}

func TestDeterministic(t *testing.T) {
	var results [3]*Result
	for i, workers := range []int{1, 3, 2} {
		cfg := tiny(t.TempDir())
		cfg.Workers = workers
		if i == 2 {
			cfg.Seed++
		}
		res, err := Generate(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		results[i] = res
	}
	a, b, other := results[0], results[1], results[2]
	for _, rel := range []string{"nybg2020/train/metadata.json", "nybg2020/test/metadata.json", "solution.csv"} {
		x, y := read(t, filepath.Join(a.Dir, rel)), read(t, filepath.Join(b.Dir, rel))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between 1 and 3 workers", rel)
		}
		if bytes.Equal(x, read(t, filepath.Join(other.Dir, rel))) {
			t.Errorf("%s is the same for another seed", rel)
		}
	}
	imgs, _ := filepath.Glob(filepath.Join(a.Root, "*", "images", "*", "*.jpg"))
	more, _ := filepath.Glob(filepath.Join(a.Root, "train", "images", "*", "*", "*.jpg"))
	imgs = append(imgs, more...)
	if len(imgs) != a.TrainImages+a.TestImages {
		t.Fatalf("found %d images, want %d", len(imgs), a.TrainImages+a.TestImages)
	}
	for _, p := range imgs {
		rel, _ := filepath.Rel(a.Dir, p)
		if !bytes.Equal(read(t, p), read(t, filepath.Join(b.Dir, rel))) {
			t.Fatalf("%s differs between 1 and 3 workers", rel)
		}
	}
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCancelLeavesNoMetadata(t *testing.T) {
	cfg := tiny(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Generate(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, "nybg2020", "train", "metadata.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cancelled run wrote metadata (%v)", err)
	}
}

func TestBadConfig(t *testing.T) {
	for name, edit := range map[string]func(*Config){
		"no out":         func(c *Config) { c.Out = "" },
		"min > max":      func(c *Config) { c.MinPerClass, c.MaxPerClass = 5, 4 },
		"genera > spp":   func(c *Config) { c.Genera = c.Species + 1 },
		"no families":    func(c *Config) { c.Families = 0 },
		"tiny sheet":     func(c *Config) { c.Size = 10 },
		"test fraction":  func(c *Config) { c.TestFraction = 1.5 },
		"jpeg quality":   func(c *Config) { c.Quality = 101 },
		"negative tests": func(c *Config) { c.TestPerClass = -1 },
	} {
		cfg := tiny(t.TempDir())
		edit(&cfg)
		if _, err := Generate(context.Background(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestLatin1JSON(t *testing.T) {
	b, err := appendLatin1JSON(nil, "Aloë × \"x\"\\\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte("\"Alo\xeb \xd7 \\\"x\\\"\\\\\\u000a\""); !bytes.Equal(b, want) {
		t.Errorf("got %q, want %q", b, want)
	}
	if _, err := appendLatin1JSON(nil, "Œnothera"); err == nil {
		t.Error("Œ is not Latin-1 but was accepted")
	}
}

// traitDistance is a rough dissimilarity of two taxa's looks.
func traitDistance(a, b traits) float64 {
	d := 0.0
	for _, same := range []bool{a.Shape == b.Shape, a.Margin == b.Margin, a.Venation == b.Venation, a.Arrangement == b.Arrangement, a.Flowers == b.Flowers} {
		if !same {
			d++
		}
	}
	hue := math.Abs(a.LeafH - b.LeafH)
	d += math.Min(hue, 1-hue) * 10
	d += math.Abs(math.Log(a.LeafLen / b.LeafLen))
	d += math.Abs(math.Log(a.Aspect / b.Aspect))
	return d
}

func TestRelativesLookAlike(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	tax, err := newTaxonomy(r, 600, 120, 20)
	if err != nil {
		t.Fatal(err)
	}
	var genus, family, other []float64
	for i := range tax.categories {
		for j := i + 1; j < len(tax.categories); j++ {
			a, b := tax.categories[i], tax.categories[j]
			d := traitDistance(tax.traits[i], tax.traits[j])
			switch {
			case a.Genus == b.Genus:
				genus = append(genus, d)
			case a.Family == b.Family:
				family = append(family, d)
			default:
				other = append(other, d)
			}
		}
	}
	mg, mf, mo := mean(genus), mean(family), mean(other)
	t.Logf("mean trait distance: same genus %.2f, same family %.2f, unrelated %.2f", mg, mf, mo)
	if !(mg < 0.8*mf && mf < 0.8*mo) {
		t.Errorf("relatives do not look alike: genus %.2f, family %.2f, unrelated %.2f", mg, mf, mo)
	}
	names := map[string]bool{}
	for _, c := range tax.categories {
		if names[c.Name] {
			t.Errorf("duplicate species name %q", c.Name)
		}
		names[c.Name] = true
	}
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// The species signal survives rendering and per-specimen variation: even a nearest-centroid
// classifier on colour histograms of the plant pixels (at 128 px) recognises species far above
// chance, and more often gets the genus right than the species.
func TestSpeciesRecognisableFromPixels(t *testing.T) {
	cfg := tiny(t.TempDir())
	cfg.Species, cfg.Genera, cfg.Families = 40, 12, 4
	cfg.MinPerClass, cfg.MaxPerClass, cfg.TestPerClass = 10, 10, 0
	cfg.Size = 128
	p, err := newPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker()
	const nf = 65
	feats := make([][nf]float64, len(p.trainClass))
	sums := make([][nf]float64, cfg.Species)
	for id, c := range p.trainClass {
		img := w.render(p, splitTrain, id)
		feats[id] = plantHistogram(img.Pix, img.Stride, img.Rect.Dx(), img.Rect.Dy())
		for k, v := range feats[id] {
			sums[c][k] += v
		}
	}
	species, genus := 0, 0
	for id, f := range feats {
		truth := int(p.trainClass[id])
		best, bestD := -1, math.Inf(1)
		for c := range sums {
			n := float64(p.trainPer[c])
			d := 0.0
			for k := range f {
				s := sums[c][k]
				if c == truth { // leave this image out of its own centroid
					s -= f[k]
				}
				x := f[k] - s/(n-b2f(c == truth))
				d += x * x
			}
			if d < bestD {
				best, bestD = c, d
			}
		}
		if best == truth {
			species++
		}
		if p.tax.categories[best].Genus == p.tax.categories[truth].Genus {
			genus++
		}
	}
	n := float64(len(feats))
	accS, accG := float64(species)/n, float64(genus)/n
	t.Logf("nearest centroid on colour histograms: species %.3f, genus %.3f, chance %.3f", accS, accG, 1/float64(cfg.Species))
	if accS < 10.0/float64(cfg.Species) || accG <= accS {
		t.Errorf("species not recognisable: species accuracy %.3f, genus accuracy %.3f", accS, accG)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// plantHistogram is a 4×4×4 colour histogram of the pixels darker than the paper above the label
// area, and the share of such pixels.
func plantHistogram(pix []byte, stride, w, h int) [65]float64 {
	var f [65]float64
	n := 0.0
	for y := 0; y < h*3/4; y++ {
		for x := 0; x < w; x++ {
			i := y*stride + 4*x
			r, g, b := int(pix[i]), int(pix[i+1]), int(pix[i+2])
			if r+g+b > 540 {
				continue
			}
			f[r/64*16+g/64*4+b/64]++
			n++
		}
	}
	for k := range 64 {
		f[k] /= n + 1
	}
	f[64] = n / float64(w*h)
	return f
}
