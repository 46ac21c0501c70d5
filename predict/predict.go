// Package predict assigns test embeddings to their nearest class prototypes (one exact top-k search
// over all classes, the test set embedded once) and writes the Kaggle submission, the top-k file and
// the list of images that could not be read.
package predict

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"protoherb/atomicfile"
	"protoherb/eval"
	"protoherb/proto"
)

// Result holds the predictions in the order of the test embeddings.
type Result struct {
	IDs    []int64         // test image ids
	Pred   []int64         // predicted class id of each image
	Ranked [][]eval.Ranked // the top-k classes with distances
	// Failed are the images that could not be read; they get Fallback, the class with the most
	// training images.
	Failed   []int64
	Fallback int64
	// SearchTime is the time of the nearest-prototype search alone.
	SearchTime time.Duration
}

// Run searches every test embedding against every prototype of the index (k neighbours kept per
// image, at least 1; the metric and tiles are the index's). The queries are transformed in place
// into the prototypes' space.
func Run(ctx context.Context, x *proto.Index, e *proto.Embeddings, k int) (*Result, error) {
	if k < 1 {
		return nil, fmt.Errorf("predict: k = %d, want at least 1", k)
	}
	p := x.Prototypes()
	if p == nil || len(p.Classes) == 0 {
		return nil, fmt.Errorf("predict: %s: no class has a prototype", x.Path())
	}
	if e.Dim != p.Dim {
		return nil, fmt.Errorf("predict: prototypes are %d-dimensional (model %s), the test embeddings %d-dimensional (model %s): they come from different models",
			p.Dim, p.Model, e.Dim, e.Model)
	}
	t0 := time.Now()
	dist, ids, err := x.SearchInPlace(ctx, e.Vectors, k)
	if err != nil {
		return nil, err
	}
	r := &Result{IDs: e.IDs, Pred: make([]int64, e.Len()), Ranked: make([][]eval.Ranked, e.Len()),
		Failed: e.Failed, Fallback: MostFrequent(p), SearchTime: time.Since(t0)}
	failed := make(map[int64]bool, len(e.Failed))
	for _, id := range e.Failed {
		failed[id] = true
	}
	for i, id := range e.IDs {
		if failed[id] {
			r.Pred[i] = r.Fallback
			r.Ranked[i] = []eval.Ranked{{Class: r.Fallback, Distance: 0}}
			continue
		}
		r.Pred[i] = ids[i*k]
		for j := range k {
			if ids[i*k+j] >= 0 {
				r.Ranked[i] = append(r.Ranked[i], eval.Ranked{Class: ids[i*k+j], Distance: dist[i*k+j]})
			}
		}
	}
	return r, nil
}

// WriteSubmission writes the Kaggle submission (Id,Predicted) atomically.
func (r *Result) WriteSubmission(path string) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error { return eval.WriteSubmission(w, r.IDs, r.Pred) })
}

// WriteTopK writes the top-k file (Id,Rank,Predicted,Distance) atomically.
func (r *Result) WriteTopK(path string) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error { return eval.WriteTopK(w, r.IDs, r.Ranked) })
}

// WriteFailed writes the ids of the images that could not be read (header Id) atomically.
func (r *Result) WriteFailed(path string) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		if _, err := fmt.Fprintln(w, "Id"); err != nil {
			return err
		}
		for _, id := range r.Failed {
			if _, err := fmt.Fprintln(w, strconv.FormatInt(id, 10)); err != nil {
				return err
			}
		}
		return nil
	})
}

// MostFrequent returns the class with the most training images (the smallest id among equals).
func MostFrequent(p *proto.Prototypes) int64 {
	best, bestN := int64(-1), int64(-1)
	for i, c := range p.Classes {
		if n := p.Counts[i]; n > bestN || (n == bestN && c.ID < best) {
			best, bestN = c.ID, n
		}
	}
	return best
}
