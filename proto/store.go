// Package proto holds the prototype store: per-class sums and counts of embeddings (float64, so that
// shards merge exactly), the classes with their taxonomy and the fingerprint of the model that made
// the embeddings, and the robust prototypes built from them (normalisation, centering, shrinkage
// toward the genus and family means).
//
// A class that has no images is kept in the store (so that adding images later works) but excluded
// from the prototypes a Build returns, with a warning; Prototypes.Excluded lists such classes.
package proto

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"protoherb/dataset"
)

// Class is one species and its taxonomy: the dataset's class type, so that classes pass from a
// dataset to a prototype file and the service unchanged.
type Class = dataset.Class

// Options fix how embeddings are summed; they are stored with the sums and must agree to merge.
type Options struct {
	// NormalizeEmbeddings scales every embedding to unit L2 length before it is summed; queries are
	// scaled the same way by Prototypes.Transform.
	NormalizeEmbeddings bool `json:"normalize_embeddings"`
}

// Store accumulates per-class sums, counts and sums of squared lengths of embeddings.
// It is not safe for concurrent use.
type Store struct {
	dim     int
	model   string
	opt     Options
	classes []Class
	row     map[int64]int // class id → row
	sums    []float64     // len(classes) × dim
	counts  []int64
	sqnorms []float64 // Σ|x|² per class (for the data-driven shrinkage)
	build   Build     // the Build recorded with the store (`protoherb prototypes --shrink ...`)

	// What the file records for its writers (see Index): the generation (one more at every save
	// through an Index), the temperature calibration, each class's squared distance to its nearest
	// other prototype under cal.Build (NaN: not known), and the receipts of recent enrolments.
	gen      uint64
	cal      Calibration
	nearest  []float64
	receipts []Receipt
}

// DefaultBuild returns the Build options recorded with the store (the zero Build when none).
func (s *Store) DefaultBuild() Build { return s.build }

// SetDefaultBuild records Build options with the store, for its users to apply (predict, serve).
func (s *Store) SetDefaultBuild(b Build) { s.build = b }

// New returns an empty store for dim-dimensional embeddings from the model with the given
// fingerprint, holding the given classes (duplicate ids are an error).
func New(dim int, model string, classes []Class, opt Options) (*Store, error) {
	if dim <= 0 {
		return nil, fmt.Errorf("proto: embedding dimension %d must be positive", dim)
	}
	n := len(classes)
	// Sized once: growing the sums class by class copied them ~log2(n) times, 1.0 of the 1.3 s
	// that loading a 135 MB file of Herbarium 2020's 32,094 classes took (now 0.3 s).
	s := &Store{dim: dim, model: model, opt: opt, row: make(map[int64]int, n),
		classes: make([]Class, 0, n), sums: make([]float64, 0, n*dim), counts: make([]int64, 0, n),
		sqnorms: make([]float64, 0, n), nearest: make([]float64, 0, n)}
	for _, c := range classes {
		if err := s.addClass(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) addClass(c Class) error {
	if _, dup := s.row[c.ID]; dup {
		return fmt.Errorf("proto: class id %d appears twice", c.ID)
	}
	s.row[c.ID] = len(s.classes)
	s.classes = append(s.classes, c)
	s.sums = append(s.sums, make([]float64, s.dim)...)
	s.counts = append(s.counts, 0)
	s.sqnorms = append(s.sqnorms, 0)
	s.nearest = append(s.nearest, math.NaN())
	return nil
}

// Dim returns the embedding dimension.
func (s *Store) Dim() int { return s.dim }

// Model returns the fingerprint of the model whose embeddings the store holds.
func (s *Store) Model() string { return s.model }

// Options returns how embeddings are summed.
func (s *Store) Options() Options { return s.opt }

// Len returns the number of classes (with or without images).
func (s *Store) Len() int { return len(s.classes) }

// Classes returns the classes in store order (a copy).
func (s *Store) Classes() []Class { return slices.Clone(s.classes) }

// Class returns the class with the given id.
func (s *Store) Class(id int64) (Class, bool) {
	r, ok := s.row[id]
	if !ok {
		return Class{}, false
	}
	return s.classes[r], true
}

// Count returns the number of embeddings summed for class id (0 for an unknown class).
func (s *Store) Count(id int64) int64 {
	if r, ok := s.row[id]; ok {
		return s.counts[r]
	}
	return 0
}

// Total returns the number of embeddings summed over all classes.
func (s *Store) Total() int64 {
	var n int64
	for _, c := range s.counts {
		n += c
	}
	return n
}

// Mean returns class id's mean embedding (nil when it has no images).
func (s *Store) Mean(id int64) []float64 {
	r, ok := s.row[id]
	if !ok || s.counts[r] == 0 {
		return nil
	}
	m := slices.Clone(s.sums[r*s.dim : (r+1)*s.dim])
	for j := range m {
		m[j] /= float64(s.counts[r])
	}
	return m
}

// Accumulate adds embeddings (len(labels) rows of Dim values) to the sums of their classes.
// imageIDs, when not nil, name the rows in errors. Nothing is added when any row is bad: a wrong
// dimension, a non-finite value, or a label that is not one of the store's classes.
func (s *Store) Accumulate(embeddings []float32, labels []int64, imageIDs []int64) error {
	if _, err := s.check(embeddings, len(labels), imageIDs); err != nil {
		return err
	}
	idx := make([]int, len(labels))
	for i, l := range labels {
		r, ok := s.row[l]
		if !ok {
			return fmt.Errorf("proto: %s has label %d, which is not a class of the prototypes", rowName(i, imageIDs), l)
		}
		idx[i] = r
	}
	for i, r := range idx {
		s.addRow(r, embeddings[i*s.dim:(i+1)*s.dim])
	}
	return nil
}

// Add appends class c with the given embeddings, or, when a class with c.ID exists, adds the
// embeddings to it and updates its name and taxonomy (fields left empty keep their value). This is
// how a species is added without retraining.
func (s *Store) Add(c Class, embeddings []float32) error {
	n := 0
	if s.dim > 0 {
		n = len(embeddings) / s.dim
	}
	if _, err := s.check(embeddings, n, nil); err != nil {
		return fmt.Errorf("class %d (%s): %w", c.ID, c.Name, err)
	}
	r, ok := s.row[c.ID]
	if !ok {
		if err := s.addClass(c); err != nil {
			return err
		}
		r = s.row[c.ID]
	} else {
		old := &s.classes[r]
		if c.Name != "" {
			old.Name = c.Name
		}
		if c.Genus != "" {
			old.Genus = c.Genus
		}
		if c.Family != "" {
			old.Family = c.Family
		}
	}
	for i := range n {
		s.addRow(r, embeddings[i*s.dim:(i+1)*s.dim])
	}
	return nil
}

// ErrConflict marks an enrolment refused because of what the file holds (a taxonomy or id that
// differs from the recorded one), not because of a failure: errors.Is(err, ErrConflict).
var ErrConflict = errors.New("conflict")

// conflict wraps a refusal so that errors.Is(err, ErrConflict) and errors.Unwrap gives the message.
type conflictError struct{ msg string }

func (e *conflictError) Error() string        { return e.msg }
func (e *conflictError) Is(target error) bool { return target == ErrConflict }
func (e *conflictError) Unwrap() error        { return errors.New(e.msg) }

func conflictf(format string, args ...any) error {
	return &conflictError{msg: fmt.Sprintf(format, args...)}
}

// AutoID asks Enrol to choose a class id: the id of the class with the name, else one more than
// the largest.
const AutoID int64 = -1

// CleanName trims a species name and collapses its inner spacing.
func CleanName(name string) string { return strings.Join(strings.Fields(name), " ") }

// NameKey is a species name's identity: two names with the same key name the same species (case
// and spacing do not matter). Every writer of a prototype file (the CLI, the server) matches names
// by it.
func NameKey(name string) string { return strings.ToLower(CleanName(name)) }

// Lookup returns the class whose name has the same NameKey as name.
func (s *Store) Lookup(name string) (Class, bool) {
	k := NameKey(name)
	for _, c := range s.classes {
		if NameKey(c.Name) == k {
			return c, true
		}
	}
	return Class{}, false
}

// Enrol adds embeddings (rows of Dim values) to the species named c.Name, or creates it. An
// existing species (same NameKey) keeps its id and recorded name; a genus or family that differs
// from the recorded one (case aside) is an error, a missing one is filled in. A new species gets
// c.ID, or with AutoID one more than the largest id. An explicit c.ID that another species holds,
// or that differs from the existing species' id, is an error. On error nothing changed. It returns
// the class as stored and whether it was created.
func (s *Store) Enrol(c Class, embeddings []float32) (Class, bool, error) {
	c.Name, c.Genus, c.Family = CleanName(c.Name), strings.TrimSpace(c.Genus), strings.TrimSpace(c.Family)
	if c.Name == "" {
		return Class{}, false, conflictf("proto: enrol: the species needs a name")
	}
	if len(embeddings) == 0 {
		return Class{}, false, fmt.Errorf("proto: enrol %s: no embeddings", c.Name)
	}
	old, found := s.Lookup(c.Name)
	switch {
	case found:
		if c.ID != AutoID && c.ID != old.ID {
			return Class{}, false, conflictf("proto: enrol %s: the species has id %d, not %d", c.Name, old.ID, c.ID)
		}
		if c.Genus != "" && old.Genus != "" && !strings.EqualFold(c.Genus, old.Genus) {
			return Class{}, false, conflictf("proto: enrol %s: genus %q differs from the recorded %q", c.Name, c.Genus, old.Genus)
		}
		if c.Family != "" && old.Family != "" && !strings.EqualFold(c.Family, old.Family) {
			return Class{}, false, conflictf("proto: enrol %s: family %q differs from the recorded %q", c.Name, c.Family, old.Family)
		}
		c = Class{ID: old.ID, Name: old.Name, Genus: cmp.Or(old.Genus, c.Genus), Family: cmp.Or(old.Family, c.Family)}
	case c.ID == AutoID:
		c.ID = s.nextID()
	case c.ID < 0:
		return Class{}, false, conflictf("proto: enrol %s: class id %d is negative", c.Name, c.ID)
	default:
		if have, taken := s.Class(c.ID); taken {
			return Class{}, false, conflictf("proto: enrol %s: id %d is species %q", c.Name, c.ID, have.Name)
		}
	}
	if err := s.Add(c, embeddings); err != nil {
		return Class{}, false, err
	}
	got, _ := s.Class(c.ID)
	return got, !found, nil
}

// nextID is one more than the largest class id (0 for an empty store).
func (s *Store) nextID() int64 {
	var next int64
	for _, c := range s.classes {
		next = max(next, c.ID+1)
	}
	return next
}

// check validates n rows of embeddings.
func (s *Store) check(embeddings []float32, n int, imageIDs []int64) (int, error) {
	if len(embeddings) != n*s.dim {
		if n > 0 && len(embeddings)%n == 0 {
			return 0, fmt.Errorf("proto: embeddings have dimension %d, the prototypes %d (another model?)", len(embeddings)/n, s.dim)
		}
		return 0, fmt.Errorf("proto: %d embedding values are not %d rows of dimension %d", len(embeddings), n, s.dim)
	}
	if imageIDs != nil && len(imageIDs) != n {
		return 0, fmt.Errorf("proto: %d image ids for %d embeddings", len(imageIDs), n)
	}
	for i, v := range embeddings {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, fmt.Errorf("proto: %s has a non-finite value (%v) at column %d", rowName(i/s.dim, imageIDs), v, i%s.dim)
		}
	}
	return n, nil
}

func rowName(i int, imageIDs []int64) string {
	if imageIDs != nil {
		return fmt.Sprintf("embedding row %d (image %d)", i, imageIDs[i])
	}
	return fmt.Sprintf("embedding row %d", i)
}

func (s *Store) addRow(r int, x []float32) {
	scale := 1.0
	var sq float64
	for _, v := range x {
		sq += float64(v) * float64(v)
	}
	if s.opt.NormalizeEmbeddings && sq > 0 {
		scale = 1 / math.Sqrt(sq)
		sq = 1
	}
	sum := s.sums[r*s.dim : (r+1)*s.dim]
	for j, v := range x {
		sum[j] += float64(v) * scale
	}
	s.counts[r]++
	s.sqnorms[r] += sq
}

// clone returns a deep copy (what an enrolment changes before the file is written), with room for
// one more class so that enrolling a new species copies the sums once, not twice.
func (s *Store) clone() *Store {
	c := *s
	c.classes = slices.Grow(slices.Clone(s.classes), 1)
	c.row = maps.Clone(s.row)
	c.sums = slices.Grow(slices.Clone(s.sums), s.dim)
	c.counts = slices.Grow(slices.Clone(s.counts), 1)
	c.sqnorms = slices.Grow(slices.Clone(s.sqnorms), 1)
	c.nearest = slices.Grow(slices.Clone(s.nearest), 1)
	c.receipts = slices.Clone(s.receipts)
	return &c
}

// Merge returns a new store holding the classes of all the stores and the exact sums of their
// embeddings. The stores must share the dimension, the model fingerprint and the options; a class
// id present in several stores must name the same class.
func Merge(a *Store, more ...*Store) (*Store, error) {
	m, err := newMerger(a)
	if err != nil {
		return nil, err
	}
	for i, s := range append([]*Store{a}, more...) {
		if err := m.add(s); err != nil {
			return nil, fmt.Errorf("proto: merge: store %d: %w", i, err)
		}
	}
	return m.out, nil
}

// MergeFiles merges prototype files (the shards of a job) exactly, as Merge does, reading one file
// at a time into the running sums: memory is the merged store and one shard, whatever the number
// of shards (all four files of the Herbarium 2020 shape at once took 5.1 GB, 12× one file). Errors
// name the file.
func MergeFiles(ctx context.Context, paths []string) (*Store, error) {
	if len(paths) == 0 {
		return nil, errors.New("proto: merge: no files")
	}
	var m *merger
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := Load(p)
		if err != nil {
			return nil, err
		}
		if m == nil {
			if m, err = newMerger(s); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
		if err := m.add(s); err != nil {
			return nil, fmt.Errorf("proto: merge: %s: %w", p, err)
		}
	}
	return m.out, nil
}

// merger accumulates stores into out, whose dimension, model and options are the first store's.
type merger struct{ out *Store }

func newMerger(first *Store) (*merger, error) {
	out, err := New(first.dim, first.model, nil, first.opt)
	if err != nil {
		return nil, err
	}
	out.build = first.build
	return &merger{out: out}, nil
}

// add sums s into the merged store.
func (m *merger) add(s *Store) error {
	out := m.out
	if s.dim != out.dim {
		return fmt.Errorf("dimension %d, the first has %d", s.dim, out.dim)
	}
	if s.model != out.model {
		return fmt.Errorf("made by model %q, the first by %q", s.model, out.model)
	}
	if s.opt != out.opt {
		return fmt.Errorf("sums embeddings with %+v, the first with %+v", s.opt, out.opt)
	}
	for r, c := range s.classes {
		o, ok := out.row[c.ID]
		if !ok {
			if err := out.addClass(c); err != nil {
				return err
			}
			o = out.row[c.ID]
		} else if have := out.classes[o]; !sameClass(have, c) {
			return fmt.Errorf("class %d is %q (%s, %s) here but %q (%s, %s) before",
				c.ID, c.Name, c.Genus, c.Family, have.Name, have.Genus, have.Family)
		}
		dst := out.sums[o*out.dim : (o+1)*out.dim]
		for j, v := range s.sums[r*out.dim : (r+1)*out.dim] {
			dst[j] += v
		}
		out.counts[o] += s.counts[r]
		out.sqnorms[o] += s.sqnorms[r]
	}
	return nil
}

func sameClass(a, b Class) bool { return a == b }
