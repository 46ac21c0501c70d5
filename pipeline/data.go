package pipeline

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"protoherb/atomicfile"
	"protoherb/dataset"
	"protoherb/eval"
)

// Splits of OUT/split.csv.
const (
	splitFit     = "fit"     // trained on
	splitVal     = "val"     // held out to choose the prototype build
	splitHoldout = "holdout" // held out to evaluate (--holdout)
)

// data is what a run reads: the training images split three ways, and the images it predicts.
type data struct {
	train             *dataset.Dataset // every training image
	fit, val, holdout *dataset.Dataset // subsets of train
	// predict are the images of the submission: the test split, else the holdout images.
	predict *dataset.Dataset
	// truth labels predict when known: a labelled test split, solution.csv beside the data, or
	// the holdout images. nil otherwise (a submission without a score).
	truth     *eval.Labels
	truthName string
}

// openData opens the dataset and splits its training images (deterministic for the seed).
func openData(c *Config) (*data, error) {
	tr, err := dataset.Open(c.Data, dataset.Options{Format: c.Format, Split: "train"})
	if err != nil {
		return nil, err
	}
	d := &data{train: tr}
	rest := dataset.Positions(len(tr.Samples))
	var holdout []int
	if c.Holdout > 0 {
		rest, holdout = dataset.StratifiedSplit(tr, c.Holdout, c.Seed)
	}
	sub := subset(tr, rest, "")
	fitPos, valPos := dataset.StratifiedSplit(sub, c.ValFrac, c.Seed+1)
	d.fit, d.val = subset(sub, fitPos, splitFit), subset(sub, valPos, splitVal)
	d.holdout = subset(tr, holdout, splitHoldout)
	if te, err := dataset.Open(c.Data, dataset.Options{Format: c.Format, Split: "test"}); err == nil && c.Holdout == 0 {
		d.predict = te
		d.truth, d.truthName, err = testTruth(c.Data, te)
		if err != nil {
			return nil, err
		}
	} else if len(holdout) > 0 {
		d.predict, d.truth, d.truthName = d.holdout, labelsOf(d.holdout), "the holdout images"
	} else {
		return nil, fmt.Errorf("%s: no test split to predict (give --holdout F to hold out training images)", c.Data)
	}
	return d, nil
}

// testTruth finds the labels of a test split: its own, else a solution.csv beside the data.
func testTruth(root string, te *dataset.Dataset) (*eval.Labels, string, error) {
	if len(te.Samples) > 0 && te.Samples[0].Label >= 0 {
		return labelsOf(te), "the labelled test split", nil
	}
	dir := root
	if st, err := os.Stat(root); err == nil && !st.IsDir() {
		dir = filepath.Dir(root)
	}
	for _, p := range []string{filepath.Join(dir, "solution.csv"), filepath.Join(filepath.Dir(dir), "solution.csv")} {
		if _, err := os.Stat(p); err == nil {
			l, err := eval.ReadLabelsFile(p)
			return l, p, err
		}
	}
	return nil, "", nil
}

func labelsOf(d *dataset.Dataset) *eval.Labels {
	l := &eval.Labels{Name: d.Root + " (" + d.Split + ")"}
	for _, s := range d.Samples {
		if s.Label >= 0 {
			l.IDs = append(l.IDs, s.ID)
			l.Class = append(l.Class, d.Classes[s.Label].ID)
		}
	}
	return l
}

// subset is a dataset of some of d's samples, with all of d's classes.
func subset(d *dataset.Dataset, pos []int, split string) *dataset.Dataset {
	s := &dataset.Dataset{Root: d.Root, Format: d.Format, Split: split, Classes: d.Classes}
	for _, p := range pos {
		s.Samples = append(s.Samples, d.Samples[p])
	}
	if split == "" {
		s.Split = d.Split
	}
	return s
}

// writeSplit writes OUT/split.csv, the file the training stages read: absolute paths, class ids.
func (d *data) writeSplit(path string) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		cw.Write([]string{"path", "class", "split"})
		for _, s := range []*dataset.Dataset{d.fit, d.val, d.holdout} {
			for _, x := range s.Samples {
				cw.Write([]string{x.Path, strconv.FormatInt(d.train.Classes[x.Label].ID, 10), s.Split})
			}
		}
		cw.Flush()
		return cw.Error()
	})
}

// eligibleClasses counts the classes of d with at least n images.
func eligibleClasses(d *dataset.Dataset, n int) int {
	return len(slices.DeleteFunc(d.ClassCounts(), func(k int) bool { return k < n }))
}
