// Package dataset opens collections of labelled specimen images (Herbarium 2020/2021/2022, ImageFolder,
// CSV, Omniglot) as one in-memory list of samples and classes, and provides the splits and samplers
// over them.
package dataset

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Format names accepted in Options.Format and reported in Dataset.Format.
const (
	FormatHerbarium2020 = "herbarium2020"
	FormatHerbarium2021 = "herbarium2021"
	FormatHerbarium2022 = "herbarium2022"
	FormatImageFolder   = "imagefolder"
	FormatCSV           = "csv"
	FormatOmniglot      = "omniglot"
)

// Formats lists every format Open understands.
var Formats = []string{FormatHerbarium2020, FormatHerbarium2021, FormatHerbarium2022, FormatImageFolder, FormatCSV, FormatOmniglot}

// Class is one label of a dataset together with its taxonomy (empty where the dataset has none).
// It is protoherb's one species type: prototype files, the service and the embeddings files hold
// it as it is (proto.Class), with these JSON names.
type Class struct {
	// ID is the dataset's own category id (what a Kaggle submission prints).
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Genus  string `json:"genus,omitempty"`
	Family string `json:"family,omitempty"`
	Order  string `json:"order,omitempty"`
}

// Sample is one image.
type Sample struct {
	ID int64
	// Path is absolute.
	Path string
	// Label indexes Dataset.Classes; -1 when unknown (test sets).
	Label int
	// Rotate is a rotation in degrees (multiple of 90) the loader applies (Omniglot rotation classes).
	Rotate int
}

// Dataset is one split of a collection.
type Dataset struct {
	Root, Format, Split string
	Classes             []Class
	Samples             []Sample
}

// Options select the format and split. Format "" detects it; Split "" means "train".
type Options struct {
	Format string
	// Split is train, test or val (Omniglot: the Vinyals split names train, val, test, trainval).
	Split string
}

// Open reads the dataset at path (a folder, a metadata file or a CSV file).
func Open(path string, opt Options) (*Dataset, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	if opt.Split == "" {
		opt.Split = "train"
	}
	format := strings.ToLower(opt.Format)
	if format == "" {
		format, err = Detect(abs)
		if err != nil {
			return nil, err
		}
	}
	var d *Dataset
	switch format {
	case FormatHerbarium2020, FormatHerbarium2021:
		d, err = openHerbarium2020(abs, format, opt.Split, opt.Format != "")
	case FormatHerbarium2022:
		d, err = openHerbarium2022(abs, opt.Split)
	case FormatImageFolder:
		d, err = openImageFolder(abs, opt.Split)
	case FormatCSV:
		d, err = openCSV(abs, opt.Split)
	case FormatOmniglot:
		d, err = openOmniglot(abs, opt.Split)
	default:
		return nil, fmt.Errorf("%s: unknown dataset format %q (want one of %s)", path, opt.Format, strings.Join(Formats, ", "))
	}
	if err != nil {
		return nil, err
	}
	if len(d.Samples) == 0 {
		return nil, fmt.Errorf("%s: no images found (format %s, split %s)", abs, d.Format, d.Split)
	}
	return d, nil
}

// Detect guesses the format of the dataset at path from the files it holds.
func Detect(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("detect dataset format: %w", err)
	}
	if !st.IsDir() {
		switch {
		case strings.HasSuffix(strings.ToLower(path), ".csv"):
			return FormatCSV, nil
		case strings.HasSuffix(path, "_metadata.json"):
			return FormatHerbarium2022, nil
		case strings.HasSuffix(path, ".json"):
			return herbarium2020Flavour(filepath.Dir(path)), nil
		}
		return "", fmt.Errorf("%s: cannot tell the dataset format of this file (give --format)", path)
	}
	exists := func(p ...string) bool {
		_, err := os.Stat(filepath.Join(append([]string{path}, p...)...))
		return err == nil
	}
	switch {
	case exists("train_metadata.json") || exists("test_metadata.json"):
		return FormatHerbarium2022, nil
	case exists("metadata.json"), exists("train", "metadata.json"), exists("test", "metadata.json"),
		exists("nybg2020"):
		return herbarium2020Flavour(path), nil
	case exists("images_background") || exists("images_evaluation"):
		return FormatOmniglot, nil
	case exists("train.csv"):
		return FormatCSV, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return "", fmt.Errorf("detect dataset format: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			return FormatImageFolder, nil
		}
	}
	for _, e := range entries {
		if strings.HasSuffix(strings.ToLower(e.Name()), ".csv") {
			return FormatCSV, nil
		}
	}
	return "", fmt.Errorf("%s: cannot tell the dataset format (no metadata.json, train.csv, class folders or Omniglot folders; give --format)", path)
}

// Positions returns 0, 1, …, n−1: every position of n samples (or classes), the subset that means all.
func Positions(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return p
}

// ClassCounts returns the number of labelled samples of every class.
func (d *Dataset) ClassCounts() []int {
	counts := make([]int, len(d.Classes))
	for _, s := range d.Samples {
		if s.Label >= 0 && s.Label < len(counts) {
			counts[s.Label]++
		}
	}
	return counts
}

// ByClass returns, for every class, the positions (into d.Samples) of its samples among subset
// (nil subset = all samples), in increasing order of position.
func (d *Dataset) ByClass(subset []int) [][]int {
	by := make([][]int, len(d.Classes))
	add := func(i int) {
		if l := d.Samples[i].Label; l >= 0 && l < len(by) {
			by[l] = append(by[l], i)
		}
	}
	if subset == nil {
		for i := range d.Samples {
			add(i)
		}
	} else {
		sorted := slices.Clone(subset)
		slices.Sort(sorted)
		for _, i := range sorted {
			add(i)
		}
	}
	return by
}

// SamplesOfClasses returns the positions of every sample whose class is in classes, in order.
func (d *Dataset) SamplesOfClasses(classes []int) []int {
	want := make([]bool, len(d.Classes))
	for _, c := range classes {
		if c >= 0 && c < len(want) {
			want[c] = true
		}
	}
	var out []int
	for i, s := range d.Samples {
		if s.Label >= 0 && s.Label < len(want) && want[s.Label] {
			out = append(out, i)
		}
	}
	return out
}

// ClassIndex maps the dataset's category ids to positions in Classes.
func (d *Dataset) ClassIndex() map[int64]int {
	m := make(map[int64]int, len(d.Classes))
	for i, c := range d.Classes {
		m[c.ID] = i
	}
	return m
}
