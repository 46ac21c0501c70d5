package dataset

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// imageExts are the file extensions taken as images when listing folders.
var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true}

func isImage(name string) bool { return imageExts[strings.ToLower(filepath.Ext(name))] }

// listImages returns the image files directly inside dir, sorted by name.
func listImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && isImage(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// openImageFolder reads root/<class>/<image> (or root/<split>/<class>/<image> when that exists).
// Classes are the sub-folder names in sorted order; a class's ID is its position.
func openImageFolder(root, split string) (*Dataset, error) {
	if st, err := os.Stat(filepath.Join(root, split)); err == nil && st.IsDir() {
		root = filepath.Join(root, split)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("open image folder: %w", err)
	}
	d := &Dataset{Root: root, Format: FormatImageFolder, Split: split}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		files, err := listImages(filepath.Join(root, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("open image folder: %w", err)
		}
		label := len(d.Classes)
		d.Classes = append(d.Classes, Class{ID: int64(label), Name: e.Name()})
		for _, f := range files {
			d.Samples = append(d.Samples, Sample{ID: int64(len(d.Samples)), Path: f, Label: label})
		}
	}
	return d, nil
}

// openCSV reads a CSV with a header. Either `id,species,...` (leaf99: image at images/<id>.jpg beside
// the CSV) or `path,label` (path relative to the CSV's folder). path may be the CSV file or a folder
// holding <split>.csv. A file without a label/species column (a test list) gives labels -1. A split
// file, `path,class,split` (as ../shared/bench/seed_pipeline.py writes it), holds every split: the
// rows of the requested one are read, and the classes are those of all rows, so that every split
// numbers them alike.
func openCSV(path, split string) (*Dataset, error) {
	file := csvFile(path, split)
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open CSV dataset: %w", err)
	}
	defer f.Close()
	base := filepath.Dir(file)
	r := csv.NewReader(f)
	r.ReuseRecord = true
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: reading the header: %w", file, err)
	}
	// The reader reuses its record: keep a copy, which errors read column names from.
	header = slices.Clone(header)
	c, err := csvColumns(header)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	rows, names, err := csvSource{file: file, base: base, header: header, cols: c}.readRows(r)
	if err != nil {
		return nil, err
	}
	d := &Dataset{Root: base, Format: FormatCSV, Split: split}
	classOf := map[string]int{}
	d.Classes = numberClasses(names, classOf)
	var splits map[string]int
	d.Samples, splits = csvSamples(rows, c, split, classOf)
	if c.split >= 0 && len(d.Samples) == 0 {
		return nil, fmt.Errorf("%s: no row of split %q (the split column has %v)", file, split, splits)
	}
	return d, nil
}

// csvFile is the CSV file of a CSV dataset: path itself, or <split>.csv inside path when path is a
// folder.
func csvFile(path, split string) string {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return filepath.Join(path, split+".csv")
	}
	return path
}

// csvRow is one data row of a CSV dataset: its sample ID, its image path (resolved), and its label
// and split ("" when the file has no such column).
type csvRow struct {
	id    int64
	path  string
	label string
	split string
}

// csvSource is what reading a CSV dataset's rows needs besides the reader.
type csvSource struct {
	file   string   // named in errors
	base   string   // the CSV's folder, where relative paths start
	header []string // the header record, which names the path column in errors
	cols   csvCols
}

// readRows reads the data rows after the header (so the first is line 2 in errors). It returns the
// rows and the distinct labels in order of first use.
func (src csvSource) readRows(r *csv.Reader) ([]csvRow, []string, error) {
	seen := map[string]bool{}
	var names []string
	var rows []csvRow
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, names, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", src.file, err)
		}
		rw, err := src.parseRow(rec, line, int64(len(rows)))
		if err != nil {
			return nil, nil, err
		}
		if src.cols.label >= 0 && !seen[rw.label] {
			seen[rw.label] = true
			names = append(names, rw.label)
		}
		rows = append(rows, rw)
	}
}

// parseRow checks and reads the record at line; n is the row's position, its sample ID unless a
// leaf99 id gives one.
func (src csvSource) parseRow(rec []string, line int, n int64) (csvRow, error) {
	c := src.cols
	if c.path >= len(rec) || c.label >= len(rec) || c.split >= len(rec) {
		return csvRow{}, fmt.Errorf("%s:%d: too few columns", src.file, line)
	}
	p := strings.TrimSpace(rec[c.path])
	if p == "" {
		return csvRow{}, fmt.Errorf("%s:%d: empty %s", src.file, line, src.header[c.path])
	}
	id, p := csvImage(p, src.base, c.leaf, n)
	rw := csvRow{id: id, path: p}
	if c.label >= 0 {
		rw.label = strings.TrimSpace(rec[c.label])
	}
	if c.split >= 0 {
		rw.split = strings.TrimSpace(rec[c.split])
	}
	return rw, nil
}

// csvImage gives a row's sample ID and image path from its path cell p. For leaf99 (leaf), p is an
// id: the ID is that id when numeric (else n, the row's position) and the image is images/<id>.jpg
// (or images/<id> when it has an extension). A relative path is taken from base, the CSV's folder.
func csvImage(p, base string, leaf bool, n int64) (int64, string) {
	id := n
	if leaf {
		v, err := strconv.ParseInt(p, 10, 64)
		if err == nil {
			id = v
		}
		if filepath.Ext(p) == "" {
			p += ".jpg"
		}
		p = filepath.Join("images", p)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, filepath.FromSlash(p))
	}
	return id, p
}

// csvSamples turns the rows of split (every row when the file has no split column) into samples,
// labelled by classOf (-1 without a label column). It also counts the rows of each split, for the
// error when split has none.
func csvSamples(rows []csvRow, c csvCols, split string, classOf map[string]int) ([]Sample, map[string]int) {
	var samples []Sample
	splits := map[string]int{}
	for _, rw := range rows {
		splits[rw.split]++
		if c.split >= 0 && rw.split != split {
			continue
		}
		label := -1
		if c.label >= 0 {
			label = classOf[rw.label]
		}
		samples = append(samples, Sample{ID: rw.id, Path: rw.path, Label: label})
	}
	return samples, splits
}

// csvCols are the columns of a CSV dataset: the image (path, file, or leaf99's id), the label
// (label, species or class; -1 when absent) and the split (-1 when absent).
type csvCols struct {
	path, label, split int
	leaf               bool // the path column holds leaf99 ids: images/<id>.jpg
}

// csvColumns finds a CSV dataset's columns by header name, ignoring case and spaces.
func csvColumns(header []string) (csvCols, error) {
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	c := csvCols{path: -1, label: -1, split: -1}
	if i, ok := col["path"]; ok {
		c.path = i
	} else if i, ok := col["file"]; ok {
		c.path = i
	} else if i, ok := col["id"]; ok {
		c.path, c.leaf = i, true
	} else {
		return c, fmt.Errorf("header needs a path (or id) column, has %q", header)
	}
	for _, name := range []string{"label", "species", "class"} {
		if i, ok := col[name]; ok {
			c.label = i
			break
		}
	}
	if i, ok := col["split"]; ok {
		c.split = i
	}
	return c, nil
}

// numberClasses sorts the class names (numeric names in numeric order), records each name's index
// in classOf and returns the classes, whose IDs are their names when every name is numeric.
func numberClasses(names []string, classOf map[string]int) []Class {
	numeric := true
	for _, n := range names {
		if _, err := strconv.ParseInt(n, 10, 64); err != nil {
			numeric = false
			break
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if numeric {
			x, _ := strconv.ParseInt(a, 10, 64)
			y, _ := strconv.ParseInt(b, 10, 64)
			return cmp.Compare(x, y)
		}
		return strings.Compare(a, b)
	})
	classes := make([]Class, 0, len(names))
	for i, n := range names {
		classOf[n] = i
		id := int64(i)
		if numeric {
			id, _ = strconv.ParseInt(n, 10, 64)
		}
		classes = append(classes, Class{ID: id, Name: n})
	}
	return classes
}

// openOmniglot reads Omniglot in its original layout. With splits/vinyals/<split>.txt, every line
// Alphabet/characterNN/rotDDD is one class whose samples are that character's drawings rotated by DDD
// degrees (the alphabet may be in images_background or images_evaluation). Without split files,
// "train" is images_background and "test" images_evaluation, unrotated.
func openOmniglot(root, split string) (*Dataset, error) {
	d := &Dataset{Root: root, Format: FormatOmniglot, Split: split}
	splitFile := filepath.Join(root, "splits", "vinyals", split+".txt")
	data, err := os.ReadFile(splitFile)
	if errors.Is(err, os.ErrNotExist) {
		return omniglotBySet(d, root, split)
	}
	if err != nil {
		return nil, fmt.Errorf("omniglot: %w", err)
	}
	chars := map[string][]string{} // character folder → image files, listed once for all rotations
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.Split(line, "/")
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "rot") {
			return nil, fmt.Errorf("%s:%d: want Alphabet/characterNN/rotDDD, got %q", splitFile, n+1, line)
		}
		rot, err := strconv.Atoi(strings.TrimPrefix(parts[2], "rot"))
		if err != nil || rot%90 != 0 {
			return nil, fmt.Errorf("%s:%d: bad rotation in %q", splitFile, n+1, line)
		}
		char := parts[0] + "/" + parts[1]
		files, ok := chars[char]
		if !ok {
			for _, set := range []string{"images_background", "images_evaluation"} {
				dir := filepath.Join(root, set, parts[0], parts[1])
				if _, err := os.Stat(dir); err == nil {
					if files, err = listImages(dir); err != nil {
						return nil, fmt.Errorf("omniglot: %w", err)
					}
					break
				}
			}
			if files == nil {
				return nil, fmt.Errorf("%s:%d: character %s not found in images_background or images_evaluation", splitFile, n+1, char)
			}
			chars[char] = files
		}
		label := len(d.Classes)
		d.Classes = append(d.Classes, Class{ID: int64(label), Name: line})
		for _, f := range files {
			d.Samples = append(d.Samples, Sample{ID: int64(len(d.Samples)), Path: f, Label: label, Rotate: rot})
		}
	}
	return d, nil
}

func omniglotBySet(d *Dataset, root, split string) (*Dataset, error) {
	set := map[string]string{"train": "images_background", "test": "images_evaluation"}[split]
	if set == "" {
		return nil, fmt.Errorf("%s: no splits/vinyals/%s.txt; without split files the splits are train (images_background) and test (images_evaluation)", root, split)
	}
	alphabets, err := os.ReadDir(filepath.Join(root, set))
	if err != nil {
		return nil, fmt.Errorf("omniglot: %w", err)
	}
	for _, a := range alphabets {
		if !a.IsDir() {
			continue
		}
		chars, err := os.ReadDir(filepath.Join(root, set, a.Name()))
		if err != nil {
			return nil, fmt.Errorf("omniglot: %w", err)
		}
		for _, c := range chars {
			if !c.IsDir() {
				continue
			}
			files, err := listImages(filepath.Join(root, set, a.Name(), c.Name()))
			if err != nil {
				return nil, fmt.Errorf("omniglot: %w", err)
			}
			label := len(d.Classes)
			d.Classes = append(d.Classes, Class{ID: int64(label), Name: a.Name() + "/" + c.Name() + "/rot000"})
			for _, f := range files {
				d.Samples = append(d.Samples, Sample{ID: int64(len(d.Samples)), Path: f, Label: label})
			}
		}
	}
	return d, nil
}
