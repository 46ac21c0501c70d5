package dataset

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"protoherb/internal/testenv"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A Herbarium 2020 train file with raw Latin-1 bytes (0xE6 = æ, 0xD7 = ×), keys in the real order.
const train2020 = `{"annotations": [{"category_id": 15672, "id": 354106, "image_id": 354106, "region_id": 1},
 {"category_id": 3, "id": 7, "image_id": 7, "region_id": 1}, {"category_id": 15672, "id": 8, "image_id": 8, "region_id": 2}],
 "categories": [{"family": "Acanthace\xe6", "genus": "Ruellia", "id": 15672, "name": "Ruellia blechum \xd7"},
  {"family": "Orchidaceae", "genus": "Aa", "id": 3, "name": "Aa calceata (Rchb.f.) Schltr."}],
 "images": [{"file_name": "images/156/72/354106.jpg", "height": 1000, "id": 354106, "license": 1, "width": 661},
  {"file_name": "images/000/03/7.jpg", "height": 1000, "id": 7, "license": 1, "width": 667},
  {"file_name": "images/156/72/8.jpg", "height": 1000, "id": 8, "license": 1, "width": 667}],
 "info": {"year": 2020}, "licenses": [{"id": 1, "name": "x", "url": "y"}], "regions": [{"id": 1, "name": "R\xe9gion"}]}`

const test2020 = `{"images": [{"file_name": "images/000/5.jpg", "height": 1000, "id": 5, "license": 1, "width": 667},
 {"file_name": "images/012/12345.jpg", "height": 1000, "id": 12345, "license": 1, "width": 667}], "info": {}, "licenses": []}`

func herbarium2020(t *testing.T) string {
	root := t.TempDir()
	// The raw string holds the escapes as text; put the real Latin-1 bytes in.
	latin1 := strings.NewReplacer(`\xe6`, "\xe6", `\xd7`, "\xd7", `\xe9`, "\xe9").Replace(train2020)
	if utf8.ValidString(latin1) {
		t.Fatal("fixture is valid UTF-8; it must hold Latin-1 bytes")
	}
	write(t, filepath.Join(root, "nybg2020", "train", "metadata.json"), latin1)
	write(t, filepath.Join(root, "nybg2020", "test", "metadata.json"), test2020)
	return root
}

func TestHerbarium2020Latin1AndPaths(t *testing.T) {
	root := herbarium2020(t)
	nybg := filepath.Join(root, "nybg2020")
	for _, p := range []string{root, nybg, filepath.Join(nybg, "train"), filepath.Join(nybg, "train", "metadata.json")} {
		d, err := Open(p, Options{})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if d.Format != FormatHerbarium2020 || d.Split != "train" {
			t.Errorf("%s: format %s split %s", p, d.Format, d.Split)
		}
		want := []Class{
			{ID: 3, Name: "Aa calceata (Rchb.f.) Schltr.", Genus: "Aa", Family: "Orchidaceae"},
			{ID: 15672, Name: "Ruellia blechum ×", Genus: "Ruellia", Family: "Acanthaceæ"},
		}
		if !slices.Equal(d.Classes, want) {
			t.Errorf("%s: classes %+v, want %+v", p, d.Classes, want)
		}
		wantS := []Sample{
			{ID: 354106, Path: filepath.Join(nybg, "train", "images", "156", "72", "354106.jpg"), Label: 1},
			{ID: 7, Path: filepath.Join(nybg, "train", "images", "000", "03", "7.jpg"), Label: 0},
			{ID: 8, Path: filepath.Join(nybg, "train", "images", "156", "72", "8.jpg"), Label: 1},
		}
		if !slices.Equal(d.Samples, wantS) {
			t.Errorf("%s: samples %+v", p, d.Samples)
		}
		if got := d.ClassCounts(); !slices.Equal(got, []int{1, 2}) {
			t.Errorf("class counts %v", got)
		}
	}
	for _, p := range []string{root, nybg, filepath.Join(nybg, "train"), filepath.Join(nybg, "test")} {
		d, err := Open(p, Options{Split: "test"})
		if err != nil {
			t.Fatalf("%s test: %v", p, err)
		}
		if len(d.Samples) != 2 || d.Samples[1].ID != 12345 || d.Samples[1].Label != -1 ||
			d.Samples[1].Path != filepath.Join(nybg, "test", "images", "012", "12345.jpg") {
			t.Errorf("%s test: %+v", p, d.Samples)
		}
	}
}

func TestHerbarium2021Detected(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	write(t, filepath.Join(root, "train", "metadata.json"), `{"annotations": [{"category_id": 1, "id": 1, "image_id": 1, "institution_id": 0}],
	 "categories": [{"family": "Pinaceae", "id": 1, "name": "Abies alba", "order": "Pinales"}],
	 "images": [{"file_name": "images/000/01/1.jpg", "height": 10, "id": 1, "license": 0, "width": 10}],
	 "institutions": [{"id": 0, "name": "NY"}], "info": {}, "licenses": []}`)
	d, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Format != FormatHerbarium2021 || d.Classes[0].Order != "Pinales" || d.Classes[0].Family != "Pinaceae" {
		t.Errorf("got format %s classes %+v", d.Format, d.Classes)
	}
	s := ComputeStats(d)
	if s.Orders != 1 || s.Families != 1 || s.Genera != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestHerbarium2022(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "train_metadata.json"), `{"annotations": [
	  {"genus_id": 1, "institution_id": 0, "category_id": 0, "image_id": "00000__001"},
	  {"genus_id": 1, "institution_id": 0, "category_id": 1, "image_id": "00001__001"}],
	 "categories": [{"authors": "L.", "category_id": 0, "family": "Amaranthaceae", "genus": "Amaranthus", "species": "albus", "scientificName": "Amaranthus albus L."},
	  {"authors": "L.", "category_id": 1, "family": "Amaranthaceae", "genus": "Amaranthus", "species": "blitum", "scientificName": "Amaranthus blitum L."}],
	 "genera": [{"genus_id": 1, "genus": "Amaranthus"}], "distances": [{"genus_id_x": 1, "genus_id_y": 1, "distance": 0.0}],
	 "images": [{"image_id": "00000__001", "file_name": "000/00/00000__001.jpg", "license": 0},
	  {"image_id": "00001__001", "file_name": "000/01/00001__001.jpg", "license": 0}],
	 "institutions": [{"institution_id": 0, "collectionCode": "A"}], "license": [{"id": 0}]}`)
	write(t, filepath.Join(root, "test_metadata.json"), `[{"file_name": "000/test-000000.jpg", "image_id": "0", "license": 0},
	 {"file_name": "000/test-000001.jpg", "image_id": "1", "license": 0}]`)
	d, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Format != FormatHerbarium2022 || len(d.Classes) != 2 || d.Classes[1].Name != "Amaranthus blitum L." ||
		d.Classes[1].Genus != "Amaranthus" || d.Samples[1].Label != 1 ||
		d.Samples[1].Path != filepath.Join(root, "train_images", "000", "01", "00001__001.jpg") {
		t.Errorf("train: %+v", d)
	}
	d, err = Open(root, Options{Split: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Samples) != 2 || d.Samples[1].ID != 1 || d.Samples[1].Label != -1 ||
		d.Samples[1].Path != filepath.Join(root, "test_images", "000", "test-000001.jpg") {
		t.Errorf("test: %+v", d.Samples)
	}
}

func TestHerbariumErrorsNameTheFile(t *testing.T) {
	cases := map[string]string{
		"unknown category": `{"annotations": [{"category_id": 9, "image_id": 1}], "categories": [{"id": 1, "name": "a"}], "images": [{"id": 1, "file_name": "a.jpg"}]}`,
		"no annotation":    `{"annotations": [{"category_id": 1, "image_id": 1}], "categories": [{"id": 1, "name": "a"}], "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]}`,
		"dangling":         `{"annotations": [{"category_id": 1, "image_id": 1}, {"category_id": 1, "image_id": 3}], "categories": [{"id": 1, "name": "a"}], "images": [{"id": 1, "file_name": "a.jpg"}]}`,
		"truncated":        `{"annotations": [{"category_id": 1, "image_id": 1}], "categories": [{"id": 1, "na`,
		"no file name":     `{"annotations": [{"category_id": 1, "image_id": 1}], "categories": [{"id": 1, "name": "a"}], "images": [{"id": 1}]}`,
	}
	for name, js := range cases {
		root := t.TempDir()
		meta := filepath.Join(root, "train", "metadata.json")
		write(t, meta, js)
		_, err := Open(root, Options{Format: FormatHerbarium2020})
		if err == nil || !strings.Contains(err.Error(), meta) {
			t.Errorf("%s: error %v does not name %s", name, err, meta)
		}
	}
	if _, err := Open(t.TempDir(), Options{Format: FormatHerbarium2020, Split: "val"}); err == nil {
		t.Error("split val accepted")
	}
}

func TestLatin1Reader(t *testing.T) {
	in := "plain \xe6\xd7\xff end"
	want := "plain æ×ÿ end"
	path := filepath.Join(t.TempDir(), "latin1.json")
	write(t, path, in)
	r, err := openText(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(iotest.OneByteReader(r))
	if err != nil || string(got) != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	// Valid UTF-8 split across the 1 MiB chunk boundary must still count as valid.
	big := bytes.Repeat([]byte("a"), 1<<20-1)
	big = append(big, "é"...)
	if ok, err := isUTF8(bytes.NewReader(big)); !ok || err != nil {
		t.Errorf("valid UTF-8 across a chunk boundary judged invalid (%v)", err)
	}
	if ok, _ := isUTF8(strings.NewReader(in)); ok {
		t.Error("Latin-1 judged valid UTF-8")
	}
	if ok, _ := isUTF8(strings.NewReader("abc\xc3")); ok {
		t.Error("truncated sequence at EOF judged valid")
	}
}

func TestGeneratedMetadataRoundTrip(t *testing.T) {
	root := t.TempDir()
	meta := filepath.Join(root, "nybg2020", "train", "metadata.json")
	os.MkdirAll(filepath.Dir(meta), 0o755)
	f, _ := os.Create(meta)
	if err := WriteHerbarium2020Metadata(f, GenerateOptions{Images: 500, Classes: 100, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Samples) != 500 || len(d.Classes) != 100 || d.Classes[0].Family != "Acanthaceæ" {
		t.Fatalf("%d samples %d classes %+v", len(d.Samples), len(d.Classes), d.Classes[0])
	}
	for _, c := range d.ClassCounts() {
		if c == 0 {
			t.Fatal("a class without images")
		}
	}
	s := d.Samples[123]
	c := d.Classes[s.Label].ID
	if want := filepath.Join(root, "nybg2020", "train", "images", "000", "00"); !strings.HasPrefix(s.Path, filepath.Dir(want)) ||
		!strings.HasSuffix(s.Path, filepath.Join(sprintf3(c/100), sprintf2(c%100), "123.jpg")) {
		t.Errorf("path %s for category %d", s.Path, c)
	}
}

func sprintf3(n int64) string {
	return string([]byte{byte('0' + n/100%10), byte('0' + n/10%10), byte('0' + n%10)})
}
func sprintf2(n int64) string { return string([]byte{byte('0' + n/10%10), byte('0' + n%10)}) }

func TestImageFolderAndCSV(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"b/2.jpg", "b/1.png", "a/x.jpg", "a/notes.txt"} {
		write(t, filepath.Join(root, "folder", f), "x")
	}
	d, err := Open(filepath.Join(root, "folder"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Format != FormatImageFolder || len(d.Classes) != 2 || d.Classes[1].Name != "b" || len(d.Samples) != 3 ||
		d.Samples[1].Path != filepath.Join(root, "folder", "b", "1.png") || d.Samples[1].Label != 1 {
		t.Errorf("imagefolder: %+v", d)
	}

	write(t, filepath.Join(root, "leaf", "train.csv"), "id,species,margin1\n1,Acer_Opalus,0.1\n2,Pterocarya_Stenoptera,0.2\n3,Acer_Opalus,0.3\n")
	d, err = Open(filepath.Join(root, "leaf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Format != FormatCSV || len(d.Classes) != 2 || d.Classes[0].Name != "Acer_Opalus" || d.Samples[2].Label != 0 ||
		d.Samples[1].Path != filepath.Join(root, "leaf", "images", "2.jpg") || d.Samples[1].ID != 2 {
		t.Errorf("leaf csv: %+v", d)
	}

	write(t, filepath.Join(root, "list.csv"), "path,label\nimgs/a.jpg,7\nimgs/b.jpg,12\n/abs/c.jpg,7\n")
	d, err = Open(filepath.Join(root, "list.csv"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Classes) != 2 || d.Classes[1].ID != 12 || d.Samples[0].Path != filepath.Join(root, "imgs", "a.jpg") ||
		d.Samples[2].Path != "/abs/c.jpg" || d.Samples[2].Label != 0 {
		t.Errorf("path,label csv: %+v", d)
	}
	write(t, filepath.Join(root, "bad.csv"), "name,label\nx,1\n")
	if _, err := Open(filepath.Join(root, "bad.csv"), Options{}); err == nil || !strings.Contains(err.Error(), "bad.csv") {
		t.Errorf("bad header: %v", err)
	}
	// An empty path cell is named by its column, not by whatever the reader last read.
	write(t, filepath.Join(root, "hole.csv"), "path,label\nimgs/a.jpg,7\n  ,12\n")
	_, err = Open(filepath.Join(root, "hole.csv"), Options{})
	if err == nil || !strings.Contains(err.Error(), "hole.csv:3: empty path") {
		t.Errorf("empty path cell: %v, want hole.csv:3: empty path", err)
	}
}

func TestOmniglotFixture(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"images_background/Latin/character01/a.png", "images_background/Latin/character01/b.png",
		"images_evaluation/Greek/character02/c.png"} {
		write(t, filepath.Join(root, f), "x")
	}
	write(t, filepath.Join(root, "splits", "vinyals", "train.txt"), "Latin/character01/rot000\nLatin/character01/rot090\nGreek/character02/rot270\n")
	d, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Format != FormatOmniglot || len(d.Classes) != 3 || len(d.Samples) != 5 || d.Samples[2].Rotate != 90 ||
		d.Samples[2].Label != 1 || d.Samples[4].Rotate != 270 || d.Classes[2].Name != "Greek/character02/rot270" {
		t.Errorf("omniglot: %+v", d)
	}
	write(t, filepath.Join(root, "splits", "vinyals", "val.txt"), "Nope/character01/rot000\n")
	if _, err := Open(root, Options{Split: "val"}); err == nil || !strings.Contains(err.Error(), "val.txt:1") {
		t.Errorf("missing character: %v", err)
	}
}

func TestOmniglotShared(t *testing.T) {
	root := testenv.SharedData(t, "omniglot")
	for split, classes := range map[string]int{"train": 4112, "val": 688, "test": 1692} {
		d, err := Open(root, Options{Split: split})
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Classes) != classes || len(d.Samples) != classes*20 {
			t.Errorf("%s: %d classes %d samples", split, len(d.Classes), len(d.Samples))
		}
	}
}

func TestLeaf99Shared(t *testing.T) {
	root := testenv.SharedData(t, "leaf99")
	d, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := ComputeStats(d)
	if s.Images != 990 || s.Classes != 99 || s.Min != 10 || s.Max != 10 {
		t.Errorf("leaf99 stats %+v", s)
	}
	if _, err := os.Stat(d.Samples[0].Path); err != nil {
		t.Error(err)
	}
}

// synthetic builds a dataset whose class c has counts[c] samples.
func synthetic(counts ...int) *Dataset {
	d := &Dataset{}
	for c, n := range counts {
		d.Classes = append(d.Classes, Class{ID: int64(c)})
		for i := 0; i < n; i++ {
			d.Samples = append(d.Samples, Sample{ID: int64(len(d.Samples)), Label: c})
		}
	}
	d.Samples = append(d.Samples, Sample{ID: -1, Label: -1})
	return d
}

func TestStratifiedSplit(t *testing.T) {
	d := synthetic(1, 2, 10, 100, 0)
	train, val := StratifiedSplit(d, 0.2, 7)
	if len(train)+len(val) != 113 {
		t.Fatalf("%d + %d samples", len(train), len(val))
	}
	tc := make([]int, 5)
	vc := make([]int, 5)
	for _, i := range train {
		tc[d.Samples[i].Label]++
	}
	for _, i := range val {
		vc[d.Samples[i].Label]++
	}
	if !slices.Equal(vc, []int{0, 0, 2, 20, 0}) || tc[0] != 1 || tc[1] != 2 {
		t.Errorf("train %v val %v", tc, vc)
	}
	train2, val2 := StratifiedSplit(d, 0.2, 7)
	if !slices.Equal(train, train2) || !slices.Equal(val, val2) {
		t.Error("not deterministic")
	}
	_, val3 := StratifiedSplit(d, 0.2, 8)
	if slices.Equal(val, val3) {
		t.Error("seed ignored")
	}
	_, val1 := StratifiedSplit(d, 1.0, 7)
	if len(val1) != 113-4 {
		t.Errorf("valFrac 1 gave %d val samples, want all but one per class", len(val1))
	}
}

func TestClassSplitAndTop(t *testing.T) {
	d := synthetic(5, 50, 3, 50, 7, 0, 9, 9, 9, 9)
	tr, ho := ClassSplit(d, 0.34, 1)
	if len(ho) != 3 || len(tr) != 6 || slices.Contains(tr, 5) || slices.Contains(ho, 5) {
		t.Errorf("train %v held out %v", tr, ho)
	}
	for _, c := range ho {
		if slices.Contains(tr, c) {
			t.Errorf("class %d in both", c)
		}
	}
	if got := TopClasses(d, 3); !slices.Equal(got, []int{1, 3, 6}) {
		t.Errorf("top classes %v", got)
	}
	if got := len(TopClasses(d, 100)); got != 9 {
		t.Errorf("top 100 gave %d classes", got)
	}
	idx := d.SamplesOfClasses([]int{2})
	if len(idx) != 3 || d.Samples[idx[0]].Label != 2 {
		t.Errorf("SamplesOfClasses %v", idx)
	}
}

func TestEpisodeSampler(t *testing.T) {
	d := synthetic(5, 6, 2, 10, 3, 8)
	if _, err := NewEpisodeSampler(d, nil, 5, 2, 3); err == nil {
		t.Error("5-way with only 4 eligible classes accepted")
	}
	s, err := NewEpisodeSampler(d, nil, 3, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Eligible(), []int{0, 1, 3, 5}) {
		t.Errorf("eligible %v", s.Eligible())
	}
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[int]bool{}
	for range 200 {
		ep := s.Sample(r)
		if len(ep.Classes) != 3 {
			t.Fatal(ep)
		}
		used := map[int]bool{}
		for i, c := range ep.Classes {
			seen[c] = true
			if len(ep.Support[i]) != 2 || len(ep.Query[i]) != 3 {
				t.Fatalf("episode shape %+v", ep)
			}
			for _, j := range append(slices.Clone(ep.Support[i]), ep.Query[i]...) {
				if d.Samples[j].Label != c || used[j] {
					t.Fatalf("sample %d (label %d) in class %d, or used twice", j, d.Samples[j].Label, c)
				}
				used[j] = true
			}
		}
	}
	if len(seen) != 4 || seen[2] || seen[4] {
		t.Errorf("classes drawn %v", seen)
	}
	a := s.Sample(rand.New(rand.NewPCG(9, 9)))
	b := s.Sample(rand.New(rand.NewPCG(9, 9)))
	if !slices.Equal(a.Classes, b.Classes) || !slices.Equal(a.Query[0], b.Query[0]) {
		t.Error("not deterministic")
	}
	lit := EpisodeSampler{Way: 2, Shot: 1, Query: 1, Data: d}
	if ep := lit.Sample(r); len(ep.Classes) != 2 {
		t.Errorf("literal sampler episode %+v", ep)
	}
	if ep := (&EpisodeSampler{Way: 2, Shot: 1}).Sample(r); len(ep.Classes) != 0 {
		t.Errorf("sampler without data gave %+v", ep)
	}
	// Restricted to a subset, only its samples appear.
	sub := d.SamplesOfClasses([]int{0, 1, 3})
	s2, err := NewEpisodeSampler(d, sub, 3, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ep := s2.Sample(r); !slices.Contains(ep.Classes, 0) || slices.Contains(ep.Classes, 5) {
		t.Errorf("subset episode %+v", ep)
	}
}

func TestBalancedSampler(t *testing.T) {
	d := synthetic(1000, 10, 1)
	s, err := NewBalancedSampler(d, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, 3)
	for _, i := range s.Batch(rand.New(rand.NewPCG(1, 1)), 3000) {
		counts[d.Samples[i].Label]++
	}
	for _, c := range counts {
		if c < 800 || c > 1200 {
			t.Errorf("class draws %v not balanced", counts)
		}
	}
	s, err = NewBalancedSampler(d, nil, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range s.Batch(rand.New(rand.NewPCG(1, 1)), 50) {
		if d.Samples[i].Label != 1 {
			t.Fatal("drew outside the given classes")
		}
	}
	if _, err := NewBalancedSampler(synthetic(1, 0), nil, []int{1}); err == nil {
		t.Error("empty class accepted")
	}
}

func TestStats(t *testing.T) {
	d := synthetic(1, 5, 20, 101, 0)
	s := ComputeStats(d)
	if s.Images != 128 || s.Labelled != 127 || s.Classes != 5 || s.EmptyClasses != 1 || s.Min != 1 || s.Max != 101 ||
		s.Median != 20 || s.Head != 1 || s.Medium != 1 || s.Tail != 2 {
		t.Errorf("%+v", s)
	}
	var b bytes.Buffer
	s.Print(&b, d)
	if !strings.Contains(b.String(), "median 20") {
		t.Error(b.String())
	}
}
