package eval

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Labels is one image-to-class CSV (a submission or a solution) as read, in file order.
type Labels struct {
	Name  string  // where it was read from, used in messages
	IDs   []int64 // image ids
	Class []int64 // class id of each row
	Line  []int   // 1-based line of each row
}

// Ranked is one entry of an image's top-k list.
type Ranked struct {
	Class    int64
	Distance float32
}

// TopK is a top-k CSV as read: each image's classes, best first.
type TopK struct {
	Name string
	// K is the smallest number of ranks any image has.
	K    int
	ByID map[int64][]Ranked // [rank-1]
	Line map[int64]int      // first line of each image, for messages
}

// ClassInfo is what the report knows about one class: its name and taxonomy (empty when unknown) and
// its number of training images.
type ClassInfo struct {
	Name, Genus, Family string
	TrainCount          int
}

// Classes maps a class id to its ClassInfo.
type Classes map[int64]ClassInfo

// reader wraps encoding/csv with the file name for messages.
type reader struct {
	name string
	cr   *csv.Reader
}

func newReader(r io.Reader, name string) *reader {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &reader{name: name, cr: cr}
}

// header reads the header row, without a UTF-8 byte order mark and surrounding spaces.
func (r *reader) header() ([]string, error) {
	rec, err := r.cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file, no header", r.name)
	}
	if err != nil {
		return nil, r.wrap(err)
	}
	out := make([]string, len(rec))
	for i, f := range rec {
		out[i] = strings.TrimSpace(f)
	}
	if len(out) > 0 {
		out[0] = strings.TrimPrefix(out[0], "\ufeff")
	}
	return out, nil
}

// next returns the next row (trimmed) and its line, or io.EOF.
func (r *reader) next(want int) ([]string, int, error) {
	rec, err := r.cr.Read()
	if err == io.EOF {
		return nil, 0, io.EOF
	}
	if err != nil {
		return nil, 0, r.wrap(err)
	}
	line, _ := r.cr.FieldPos(0)
	if want > 0 && len(rec) != want {
		return nil, line, fmt.Errorf("%s:%d: %d fields, want %d", r.name, line, len(rec), want)
	}
	for i := range rec {
		rec[i] = strings.TrimSpace(rec[i])
	}
	return rec, line, nil
}

func (r *reader) wrap(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d: %v", r.name, pe.Line, pe.Err)
	}
	return fmt.Errorf("%s: %w", r.name, err)
}

func parseInt(name string, line int, field, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s:%d: %s %q is not an integer", name, line, field, s)
	}
	return v, nil
}

func parseClass(name string, line int, field, s string) (int64, error) {
	v, err := parseInt(name, line, field, s)
	if err == nil && (v < 0 || v > math.MaxInt32) {
		err = fmt.Errorf("%s:%d: %s %d is not a class id", name, line, field, v)
	}
	return v, err
}

func checkHeader(name string, got []string, want ...string) error {
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s: header is %q, want %q", name, strings.Join(got, ","), strings.Join(want, ","))
	}
	return nil
}

// ReadLabels reads a CSV with header Id,Predicted (a Kaggle solution's extra Usage column is
// allowed and ignored). Every Id must be an integer and appear once, and
// every Predicted a non-negative integer; errors name the file and line.
func ReadLabels(r io.Reader, name string) (*Labels, error) {
	cr := newReader(r, name)
	h, err := cr.header()
	if err != nil {
		return nil, err
	}
	// Kaggle solution files may carry a Usage column (Public/Private); it is ignored.
	if len(h) != 3 || h[2] != "Usage" {
		if err := checkHeader(name, h, "Id", "Predicted"); err != nil {
			return nil, err
		}
	} else if err := checkHeader(name, h[:2], "Id", "Predicted"); err != nil {
		return nil, err
	}
	l := &Labels{Name: name}
	first := map[int64]int{}
	for {
		rec, line, err := cr.next(len(h))
		if err == io.EOF {
			return l, nil
		}
		if err != nil {
			return nil, err
		}
		id, err := parseInt(name, line, "Id", rec[0])
		if err != nil {
			return nil, err
		}
		c, err := parseClass(name, line, "Predicted", rec[1])
		if err != nil {
			return nil, err
		}
		if prev, dup := first[id]; dup {
			return nil, fmt.Errorf("%s:%d: duplicate Id %d (first on line %d)", name, line, id, prev)
		}
		first[id] = line
		l.IDs = append(l.IDs, id)
		l.Class = append(l.Class, c)
		l.Line = append(l.Line, line)
	}
}

// ReadLabelsFile reads a submission or solution file; see ReadLabels.
func ReadLabelsFile(path string) (*Labels, error) {
	return readFile(path, ReadLabels)
}

func readFile[T any](path string, read func(io.Reader, string) (T, error)) (T, error) {
	var zero T
	data, err := os.ReadFile(path)
	if err != nil {
		return zero, err
	}
	return read(bytes.NewReader(data), path)
}

// WriteSubmission writes the Kaggle submission: header Id,Predicted, one row per image in the given
// order.
func WriteSubmission(w io.Writer, ids []int64, classes []int64) error {
	if len(ids) != len(classes) {
		return fmt.Errorf("submission: %d ids for %d classes", len(ids), len(classes))
	}
	cw := csv.NewWriter(w)
	cw.Write([]string{"Id", "Predicted"})
	for i, id := range ids {
		cw.Write([]string{strconv.FormatInt(id, 10), strconv.FormatInt(classes[i], 10)})
	}
	cw.Flush()
	return cw.Error()
}

// ReadTopK reads a CSV with header Id,Rank,Predicted,Distance. Rows may come in any order; each image's
// ranks must run 1..n without gaps or repeats and name n different classes.
func ReadTopK(r io.Reader, name string) (*TopK, error) {
	cr := newReader(r, name)
	h, err := cr.header()
	if err != nil {
		return nil, err
	}
	if err := checkHeader(name, h, "Id", "Rank", "Predicted", "Distance"); err != nil {
		return nil, err
	}
	t := &TopK{Name: name, ByID: map[int64][]Ranked{}, Line: map[int64]int{}}
	type rankLine struct {
		rank int
		line int
		r    Ranked
	}
	rows := map[int64][]rankLine{}
	for {
		rec, line, err := cr.next(4)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		id, err := parseInt(name, line, "Id", rec[0])
		if err != nil {
			return nil, err
		}
		rank, err := parseInt(name, line, "Rank", rec[1])
		if err != nil {
			return nil, err
		}
		if rank < 1 || rank > 1<<20 {
			return nil, fmt.Errorf("%s:%d: Rank %d is out of range (ranks start at 1)", name, line, rank)
		}
		c, err := parseClass(name, line, "Predicted", rec[2])
		if err != nil {
			return nil, err
		}
		d, err := strconv.ParseFloat(rec[3], 32)
		if err != nil || math.IsNaN(d) {
			return nil, fmt.Errorf("%s:%d: Distance %q is not a number", name, line, rec[3])
		}
		if _, ok := t.Line[id]; !ok {
			t.Line[id] = line
		}
		rows[id] = append(rows[id], rankLine{int(rank), line, Ranked{c, float32(d)}})
	}
	t.K = math.MaxInt
	for id, rs := range rows {
		slices.SortFunc(rs, func(a, b rankLine) int { return a.rank - b.rank })
		seen := map[int64]int{}
		out := make([]Ranked, len(rs))
		for i, x := range rs {
			if x.rank != i+1 {
				if x.rank == i {
					return nil, fmt.Errorf("%s:%d: Id %d has Rank %d twice (also line %d)", name, x.line, id, x.rank, rs[i-1].line)
				}
				return nil, fmt.Errorf("%s: Id %d (line %d) has no Rank %d", name, id, t.Line[id], i+1)
			}
			if prev, dup := seen[x.r.Class]; dup {
				return nil, fmt.Errorf("%s:%d: Id %d lists class %d twice (also line %d)", name, x.line, id, x.r.Class, prev)
			}
			seen[x.r.Class] = x.line
			out[i] = x.r
		}
		t.ByID[id] = out
		t.K = min(t.K, len(out))
	}
	if len(rows) == 0 {
		t.K = 0
	}
	return t, nil
}

// ReadTopKFile reads a top-k file; see ReadTopK.
func ReadTopKFile(path string) (*TopK, error) {
	return readFile(path, ReadTopK)
}

// WriteTopK writes the top-k CSV: header Id,Rank,Predicted,Distance, one row per (image, rank), images
// in the given order and ranks from 1 (closest).
func WriteTopK(w io.Writer, ids []int64, ranked [][]Ranked) error {
	if len(ids) != len(ranked) {
		return fmt.Errorf("top-k: %d ids for %d lists", len(ids), len(ranked))
	}
	cw := csv.NewWriter(w)
	cw.Write([]string{"Id", "Rank", "Predicted", "Distance"})
	for i, id := range ids {
		sid := strconv.FormatInt(id, 10)
		for r, x := range ranked[i] {
			cw.Write([]string{sid, strconv.Itoa(r + 1), strconv.FormatInt(x.Class, 10),
				strconv.FormatFloat(float64(x.Distance), 'g', -1, 32)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadClasses reads a class CSV. The header names the columns, in any order: class_id and train_count
// are required; name, genus and family are optional; others are ignored. The usual file is
// class_id,name,genus,family,train_count.
func ReadClasses(r io.Reader, name string) (Classes, error) {
	cr := newReader(r, name)
	h, err := cr.header()
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, f := range h {
		if _, dup := col[f]; dup {
			return nil, fmt.Errorf("%s: column %q appears twice in the header", name, f)
		}
		col[f] = i
	}
	for _, req := range []string{"class_id", "train_count"} {
		if _, ok := col[req]; !ok {
			return nil, fmt.Errorf("%s: header %q has no %s column (want class_id,name,genus,family,train_count)",
				name, strings.Join(h, ","), req)
		}
	}
	get := func(rec []string, k string) string {
		if i, ok := col[k]; ok {
			return rec[i]
		}
		return ""
	}
	out := Classes{}
	lines := map[int64]int{}
	for {
		rec, line, err := cr.next(len(h))
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		id, err := parseClass(name, line, "class_id", get(rec, "class_id"))
		if err != nil {
			return nil, err
		}
		n, err := parseInt(name, line, "train_count", get(rec, "train_count"))
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, fmt.Errorf("%s:%d: train_count %d is negative", name, line, n)
		}
		if prev, dup := lines[id]; dup {
			return nil, fmt.Errorf("%s:%d: duplicate class_id %d (first on line %d)", name, line, id, prev)
		}
		lines[id] = line
		out[id] = ClassInfo{Name: get(rec, "name"), Genus: get(rec, "genus"), Family: get(rec, "family"), TrainCount: int(n)}
	}
}

// ReadClassesFile reads a class CSV file; see ReadClasses.
func ReadClassesFile(path string) (Classes, error) {
	return readFile(path, ReadClasses)
}

// WriteClasses writes c as class_id,name,genus,family,train_count sorted by class id.
func WriteClasses(w io.Writer, c Classes) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"class_id", "name", "genus", "family", "train_count"})
	for _, id := range slices.Sorted(maps.Keys(c)) {
		ci := c[id]
		cw.Write([]string{strconv.FormatInt(id, 10), ci.Name, ci.Genus, ci.Family, strconv.Itoa(ci.TrainCount)})
	}
	cw.Flush()
	return cw.Error()
}

// Inputs names the files of an evaluation; TopK and Classes are optional.
type Inputs struct {
	Pred, Truth, TopK, Classes string
}

// EvaluateFiles reads the inputs and calls Evaluate. A class file, when named, replaces opt.Classes.
func EvaluateFiles(in Inputs, opt Options) (*Report, error) {
	truth, err := ReadLabelsFile(in.Truth)
	if err != nil {
		return nil, err
	}
	pred, err := ReadLabelsFile(in.Pred)
	if err != nil {
		return nil, err
	}
	if in.TopK != "" {
		if opt.TopK, err = ReadTopKFile(in.TopK); err != nil {
			return nil, err
		}
	}
	if in.Classes != "" {
		if opt.Classes, err = ReadClassesFile(in.Classes); err != nil {
			return nil, err
		}
		opt.ClassesName = in.Classes
	}
	return Evaluate(truth, pred, opt)
}
