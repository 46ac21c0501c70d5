package dataset

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Long-tail bands by images per class, as in the long-tailed recognition literature.
const (
	HeadMin = 100 // head classes have more than HeadMin images
	TailMax = 20  // tail classes have fewer than TailMax images
)

// Stats summarise a dataset.
type Stats struct {
	Images, Labelled, Classes int
	// EmptyClasses have no image in this split.
	EmptyClasses int
	// Min, Median, Max images per non-empty class.
	Min, Median, Max int
	// Head: classes with more than 100 images; Medium: 20-100; Tail: fewer than 20 (non-empty).
	Head, Medium, Tail int
	// Distinct taxa found at each level (0 when the dataset has no such level).
	Genera, Families, Orders int
}

// ComputeStats counts images, classes and the per-class distribution.
func ComputeStats(d *Dataset) Stats {
	s := Stats{Images: len(d.Samples), Classes: len(d.Classes)}
	counts := d.ClassCounts()
	var nonEmpty []int
	for _, n := range counts {
		s.Labelled += n
		if n == 0 {
			s.EmptyClasses++
			continue
		}
		nonEmpty = append(nonEmpty, n)
		switch {
		case n > HeadMin:
			s.Head++
		case n >= TailMax:
			s.Medium++
		default:
			s.Tail++
		}
	}
	if len(nonEmpty) > 0 {
		slices.Sort(nonEmpty)
		s.Min, s.Max = nonEmpty[0], nonEmpty[len(nonEmpty)-1]
		s.Median = nonEmpty[len(nonEmpty)/2]
	}
	genera, families, orders := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, c := range d.Classes {
		if c.Genus != "" {
			genera[c.Genus] = true
		}
		if c.Family != "" {
			families[c.Family] = true
		}
		if c.Order != "" {
			orders[c.Order] = true
		}
	}
	s.Genera, s.Families, s.Orders = len(genera), len(families), len(orders)
	return s
}

// Print writes the statistics as aligned text.
func (s Stats) Print(w io.Writer, d *Dataset) {
	fmt.Fprintf(w, "dataset:   %s (format %s, split %s)\n", d.Root, d.Format, d.Split)
	fmt.Fprintf(w, "images:    %d (%d labelled)\n", s.Images, s.Labelled)
	fmt.Fprintf(w, "classes:   %d (%d without images in this split)\n", s.Classes, s.EmptyClasses)
	if s.Labelled > 0 {
		fmt.Fprintf(w, "per class: min %d, median %d, max %d\n", s.Min, s.Median, s.Max)
		fmt.Fprintf(w, "head (>%d images): %d classes; medium (%d-%d): %d; tail (<%d): %d\n",
			HeadMin, s.Head, TailMax, HeadMin, s.Medium, TailMax, s.Tail)
	}
	var levels []string
	for _, l := range []struct {
		name string
		n    int
	}{{"order", s.Orders}, {"family", s.Families}, {"genus", s.Genera}} {
		if l.n > 0 {
			levels = append(levels, fmt.Sprintf("%s (%d)", l.name, l.n))
		}
	}
	if len(levels) == 0 {
		fmt.Fprintln(w, "taxonomy:  none")
	} else {
		fmt.Fprintf(w, "taxonomy:  %s\n", strings.Join(levels, ", "))
	}
}

// Paths lists the image files of the samples, each once, in sample order (Omniglot lists each
// drawing under four rotation classes).
func (d *Dataset) Paths() []string {
	out := make([]string, 0, len(d.Samples))
	seen := make(map[string]bool, len(d.Samples))
	for _, s := range d.Samples {
		if !seen[s.Path] {
			seen[s.Path] = true
			out = append(out, s.Path)
		}
	}
	return out
}
