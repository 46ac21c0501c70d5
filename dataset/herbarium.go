package dataset

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The Herbarium metadata files are COCO-like JSON: top-level arrays of images, annotations and
// categories. They are parsed as a stream, one array element at a time, so a 200 MB file with a million
// images needs memory for the result only.

// jsonID is an id that is a number (2020, 2021) or a string (2022 image ids such as "00000__001").
type jsonID struct {
	n     int64
	s     string
	isStr bool
	set   bool
}

func (j *jsonID) UnmarshalJSON(b []byte) error {
	j.set = true
	if len(b) > 0 && b[0] == '"' {
		s, err := strconv.Unquote(string(b))
		if err != nil {
			return err
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			j.n = n
			return nil
		}
		j.s, j.isStr = s, true
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		j.set = false
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil || f != float64(int64(f)) {
			return fmt.Errorf("id %s is not an integer", b)
		}
		n = int64(f)
	}
	j.n = n
	return nil
}

func (j jsonID) String() string {
	if j.isStr {
		return strconv.Quote(j.s)
	}
	return strconv.FormatInt(j.n, 10)
}

// idSpace turns ids into int64 keys: numbers stay themselves, strings are numbered in order of first
// appearance (in a range that cannot collide with the small numeric ids of these datasets).
type idSpace struct {
	str map[string]int64
}

const stringIDBase = 1 << 40

func (s *idSpace) key(j jsonID) int64 {
	if !j.isStr {
		return j.n
	}
	if s.str == nil {
		s.str = make(map[string]int64)
	}
	k, ok := s.str[j.s]
	if !ok {
		k = stringIDBase + int64(len(s.str))
		s.str[j.s] = k
	}
	return k
}

type metaImage struct {
	ID       jsonID `json:"id"`
	ImageID  jsonID `json:"image_id"`
	FileName string `json:"file_name"`
}

type metaAnnotation struct {
	ImageID    jsonID `json:"image_id"`
	CategoryID jsonID `json:"category_id"`
}

type metaCategory struct {
	ID             jsonID `json:"id"`
	CategoryID     jsonID `json:"category_id"`
	Name           string `json:"name"`
	ScientificName string `json:"scientificName"`
	Family         string `json:"family"`
	Genus          string `json:"genus"`
	Order          string `json:"order"`
}

// metadata is a parsed metadata file.
type metadata struct {
	keys        map[string]bool
	images      []metaImage
	annotations []metaAnnotation
	categories  []metaCategory
}

// readMetadata streams a Herbarium metadata file. A top-level array is taken as the list of images
// (the 2022 test file).
func readMetadata(path string) (*metadata, error) {
	rc, err := openText(path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	m := &metadata{keys: map[string]bool{}}
	dec := json.NewDecoder(rc)
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: not JSON: %w", path, err)
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("%s: %s (near byte %d): %w", path, what, dec.InputOffset(), err)
	}
	switch tok {
	case json.Delim('['):
		if err := readArrayBody(dec, &m.images); err != nil {
			return nil, wrap("images", err)
		}
		return m, nil
	case json.Delim('{'):
	default:
		return nil, fmt.Errorf("%s: expected a JSON object or array at the top level", path)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, wrap("reading a key", err)
		}
		key, _ := tok.(string)
		m.keys[key] = true
		switch key {
		case "images":
			err = readArray(dec, &m.images)
		case "annotations":
			err = readArray(dec, &m.annotations)
		case "categories":
			err = readArray(dec, &m.categories)
		default:
			err = skipValue(dec)
		}
		if err != nil {
			return nil, wrap(key, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, wrap("end of object", err)
	}
	return m, nil
}

func readArray[T any](dec *json.Decoder, out *[]T) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if tok != json.Delim('[') {
		return errors.New("expected an array")
	}
	return readArrayBody(dec, out)
}

func readArrayBody[T any](dec *json.Decoder, out *[]T) error {
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("element %d: %w", len(*out), err)
		}
		*out = append(*out, v)
	}
	_, err := dec.Token()
	return err
}

// skipValue consumes one JSON value without keeping it.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// buildDataset joins images, annotations and categories. base is the folder file names are relative
// to. Classes are sorted by id; samples keep the order of the images array.
func buildDataset(m *metadata, metaPath, base string) (*Dataset, error) {
	var ids idSpace
	d := &Dataset{}
	seenCat := make(map[int64]bool, len(m.categories))
	for i, c := range m.categories {
		id := c.ID
		if !id.set {
			id = c.CategoryID
		}
		if !id.set || id.isStr {
			return nil, fmt.Errorf("%s: category %d has no integer id", metaPath, i)
		}
		if seenCat[id.n] {
			return nil, fmt.Errorf("%s: category id %d appears twice", metaPath, id.n)
		}
		seenCat[id.n] = true
		name := c.Name
		if name == "" {
			name = c.ScientificName
		}
		d.Classes = append(d.Classes, Class{ID: id.n, Name: name, Genus: c.Genus, Family: c.Family, Order: c.Order})
	}
	slices.SortFunc(d.Classes, func(a, b Class) int { return cmp.Compare(a.ID, b.ID) })
	classOf := d.ClassIndex()

	labels := make(map[int64]int, len(m.annotations))
	for i, a := range m.annotations {
		if !a.ImageID.set || !a.CategoryID.set {
			return nil, fmt.Errorf("%s: annotation %d lacks image_id or category_id", metaPath, i)
		}
		c, ok := classOf[a.CategoryID.n]
		if !ok || a.CategoryID.isStr {
			return nil, fmt.Errorf("%s: annotation %d (image %s) names category %s, which is not in categories", metaPath, i, a.ImageID, a.CategoryID)
		}
		labels[ids.key(a.ImageID)] = c
	}
	annotated := len(m.annotations) > 0
	d.Samples = make([]Sample, 0, len(m.images))
	seen := make(map[int64]bool, len(m.images))
	for i, im := range m.images {
		id := im.ID
		if !id.set {
			id = im.ImageID
		}
		if !id.set {
			return nil, fmt.Errorf("%s: image %d has no id", metaPath, i)
		}
		if im.FileName == "" {
			return nil, fmt.Errorf("%s: image %s has no file_name", metaPath, id)
		}
		k := ids.key(id)
		if seen[k] {
			return nil, fmt.Errorf("%s: image id %s appears twice", metaPath, id)
		}
		seen[k] = true
		label := -1
		if annotated {
			l, ok := labels[k]
			if !ok {
				return nil, fmt.Errorf("%s: image %s (%s) has no annotation", metaPath, id, im.FileName)
			}
			label = l
		}
		sid := id.n
		if id.isStr {
			sid = int64(i)
		}
		d.Samples = append(d.Samples, Sample{ID: sid, Path: filepath.Join(base, filepath.FromSlash(im.FileName)), Label: label})
	}
	if annotated && len(labels) > len(m.images) {
		return nil, fmt.Errorf("%s: %d annotations point at images that are not listed", metaPath, len(labels)-len(m.images))
	}
	return d, nil
}

// herbarium2020Flavour tells 2021 from 2020 by the folder name (the JSON decides when it can).
func herbarium2020Flavour(path string) string {
	if strings.Contains(strings.ToLower(path), "2021") {
		return FormatHerbarium2021
	}
	return FormatHerbarium2020
}

// locate2020 finds the metadata.json of a split, accepting the folder holding nybg2020/, nybg2020/
// itself, its train/ or test/ folder, or the metadata file.
func locate2020(path, split string) (string, error) {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return path, nil
	}
	if st, err := os.Stat(filepath.Join(path, "nybg2020")); err == nil && st.IsDir() {
		path = filepath.Join(path, "nybg2020")
	}
	candidates := []string{filepath.Join(path, split, "metadata.json")}
	if filepath.Base(path) == split {
		candidates = append(candidates, filepath.Join(path, "metadata.json"))
	} else if b := filepath.Base(path); b == "train" || b == "test" {
		// Pointed at the other split's folder: look beside it.
		candidates = append(candidates, filepath.Join(filepath.Dir(path), split, "metadata.json"))
		if split == "train" {
			candidates = append(candidates, filepath.Join(path, "metadata.json"))
		}
	} else {
		candidates = append(candidates, filepath.Join(path, "metadata.json"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("%s: no metadata.json for split %q (looked for %s)", path, split, strings.Join(candidates, ", "))
}

func openHerbarium2020(path, format, split string, explicit bool) (*Dataset, error) {
	if split != "train" && split != "test" {
		return nil, fmt.Errorf("%s: Herbarium has splits train and test, not %q (make a validation split with StratifiedSplit)", path, split)
	}
	metaPath, err := locate2020(path, split)
	if err != nil {
		return nil, err
	}
	m, err := readMetadata(metaPath)
	if err != nil {
		return nil, err
	}
	base := filepath.Dir(metaPath)
	d, err := buildDataset(m, metaPath, base)
	if err != nil {
		return nil, err
	}
	if !explicit {
		switch {
		case m.keys["institutions"]:
			format = FormatHerbarium2021
		case m.keys["regions"]:
			format = FormatHerbarium2020
		}
		for _, c := range d.Classes {
			if c.Order != "" {
				format = FormatHerbarium2021
				break
			}
		}
	}
	d.Root, d.Format, d.Split = filepath.Dir(base), format, split
	if b := filepath.Base(base); b != "train" && b != "test" {
		d.Root = base
	}
	if len(m.annotations) == 0 && len(m.categories) > 0 && split == "train" {
		return nil, fmt.Errorf("%s: train metadata has no annotations", metaPath)
	}
	return d, nil
}

// openHerbarium2022 reads <root>/<split>_metadata.json with images under <root>/<split>_images/.
func openHerbarium2022(path, split string) (*Dataset, error) {
	if split != "train" && split != "test" {
		return nil, fmt.Errorf("%s: Herbarium 2022 has splits train and test, not %q", path, split)
	}
	root := path
	metaPath := filepath.Join(path, split+"_metadata.json")
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		root, metaPath = filepath.Dir(path), path
	} else if _, err := os.Stat(metaPath); err != nil {
		return nil, fmt.Errorf("%s: no %s_metadata.json", path, split)
	}
	m, err := readMetadata(metaPath)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(metaPath)
	imgDir := strings.TrimSuffix(name, "_metadata.json") + "_images"
	d, err := buildDataset(m, metaPath, filepath.Join(root, imgDir))
	if err != nil {
		return nil, err
	}
	// Some copies carry the images folder in file_name already.
	for i := range d.Samples {
		rel := strings.TrimPrefix(d.Samples[i].Path, filepath.Join(root, imgDir)+string(filepath.Separator))
		if strings.HasPrefix(rel, imgDir+string(filepath.Separator)) {
			d.Samples[i].Path = filepath.Join(root, rel)
		}
	}
	d.Root, d.Format, d.Split = root, FormatHerbarium2022, split
	return d, nil
}
