package proto

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"protoherb/safetensors"
	"protoherb/search"
)

// Index owns a prototype file's whole life, as a FAISS index does: open it (applying the Build
// recorded in it, which flags only change), enrol species (identity, name rule, taxonomy
// conflicts, ids: Store.Enrol), build the prototypes, search them (package search), reconstruct
// one, and save the file atomically.
//
// Every writer of a prototype file (`protoherb prototypes add`, a running server, another process)
// takes an advisory lock on PATH.lock (flock: a file that is never replaced, so all writers lock
// the same inode) and, holding it, checks whether the file changed since it was read (another
// inode, size, modification time or the generation in its header: every save renames a new file
// into place, one generation on). A changed file is
// read again and the enrolment applied to it: no write is lost, and ids stay unique.
//
// An enrolment costs O(classes × dimension): one copy of the sums, one build, one pass of the new
// prototype against the others to keep each class's nearest-prototype distance (the spacing
// temperature is their median), and the file write. With an idempotency key, an enrolment already
// recorded in the file (the last 1,024 keys) is not applied again.
//
// Searches and enrolments may run concurrently: an enrolment prepares the new state aside and
// swaps it in; searches hold a read lock only while they run.
type Index struct {
	path     string
	edit     BuildEdit
	metric   search.Metric
	sopt     search.Options
	readOnly bool

	wmu sync.Mutex   // one writer of this Index at a time
	mu  sync.RWMutex // guards cur (held for reading by searches)
	cur *state
}

// state is one version of the file with what was built from it. It is never changed once
// published (cur), only replaced.
type state struct {
	store  *Store
	build  Build
	protos *Prototypes  // nil while no class has an image
	flat   *search.Flat // over protos
	stamp  stamp
}

// stamp identifies the file as last read or written.
type stamp struct {
	info   os.FileInfo // nil when the file did not exist
	exists bool
}

func (a stamp) same(b stamp) bool {
	if a.exists != b.exists {
		return false
	}
	return !a.exists || (os.SameFile(a.info, b.info) && a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime()))
}

func statFile(path string) (stamp, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stamp{}, nil
	}
	if err != nil {
		return stamp{}, err
	}
	return stamp{info: st, exists: true}, nil
}

// OpenOptions say how an Index serves its file.
type OpenOptions struct {
	// Edit changes the recorded Build (nil: as recorded).
	Edit BuildEdit
	// Metric the search ranks by (L2 unless set).
	Metric search.Metric
	Search search.Options
	// ReadOnly drops the sums once the prototypes are built (predict: the sums and the test
	// embeddings never sit in memory together); enrolments are then refused.
	ReadOnly bool
}

// Open reads the prototype file at path and builds its prototypes.
func Open(path string, o OpenOptions) (*Index, error) {
	// The stamp is taken before the file is read: a writer that replaces it meanwhile makes the
	// stamp stale, so the next enrolment reads the file again rather than overwrite that write.
	at, err := statFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Load(path)
	if err != nil {
		return nil, err
	}
	x := &Index{path: path, edit: o.Edit, metric: o.Metric, sopt: o.Search, readOnly: o.ReadOnly}
	st, err := x.newState(s, at)
	if err != nil {
		return nil, err
	}
	if o.ReadOnly {
		st.store = nil
	}
	if p := st.protos; p != nil && len(p.Excluded) > 0 {
		slog.Warn("classes without images have no prototype and cannot be predicted", "file", path,
			"classes", len(p.Excluded), "first", p.Excluded[:min(5, len(p.Excluded))])
	}
	x.cur = st
	return x, nil
}

// Create starts an index for a file that does not exist yet (it is written at the first save or
// enrolment): dim-dimensional embeddings of the model with the given fingerprint, recording b.
func Create(path string, dim int, model string, opt Options, b Build, o OpenOptions) (*Index, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("%s already exists", path)
	}
	s, err := New(dim, model, nil, opt)
	if err != nil {
		return nil, err
	}
	s.build = b
	x := &Index{path: path, edit: o.Edit, metric: o.Metric, sopt: o.Search}
	if x.cur, err = x.newState(s, stamp{}); err != nil {
		return nil, err
	}
	return x, nil
}

// newState builds the prototypes of s (the file as of stamp) with the recorded build changed by
// the index's edit.
func (x *Index) newState(s *Store, at stamp) (*state, error) {
	b, err := x.edit.Apply(s.build)
	if err != nil {
		return nil, err
	}
	st := &state{store: s, build: b, stamp: at}
	if s.cal.Build != b { // distances and temperature of another build do not apply
		s.cal = Calibration{Build: b}
		for i := range s.nearest {
			s.nearest[i] = math.NaN()
		}
	}
	if s.Total() == 0 {
		return st, nil
	}
	if st.protos, err = s.Build(b); err != nil {
		return nil, fmt.Errorf("%s: %w", x.path, err)
	}
	st.flat = search.NewFlat(s.dim, x.metric)
	st.flat.SetOptions(x.sopt)
	if err := st.flat.Add(st.protos.Vectors, st.protos.IDs()); err != nil {
		st.flat.Close()
		return nil, fmt.Errorf("%s: %w", x.path, err)
	}
	return st, nil
}

func (x *Index) current() *state {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.cur
}

// swap publishes st and frees the previous state's search copy once no search uses it.
func (x *Index) swap(st *state) {
	x.mu.Lock()
	old := x.cur
	x.cur = st
	x.mu.Unlock()
	if old != nil && old.flat != nil && old.flat != st.flat {
		old.flat.Close()
	}
}

// Close frees the search copy of the prototypes.
func (x *Index) Close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cur != nil && x.cur.flat != nil {
		x.cur.flat.Close()
	}
}

// Path is the prototype file.
func (x *Index) Path() string { return x.path }

// Dim is the embedding dimension.
func (x *Index) Dim() int { return x.current().dim() }

func (st *state) dim() int {
	if st.protos != nil {
		return st.protos.Dim
	}
	return st.store.dim
}

// Model is the fingerprint of the model the embeddings come from.
func (x *Index) Model() string {
	st := x.current()
	if st.protos != nil {
		return st.protos.Model
	}
	return st.store.model
}

// Build is the build in use (the recorded one, changed by OpenOptions.Edit).
func (x *Index) Build() Build { return x.current().build }

// Prototypes returns the built prototypes (nil while no class has an image). They are not
// changed later (an enrolment makes new ones): read, do not modify.
func (x *Index) Prototypes() *Prototypes { return x.current().protos }

// Len is the number of prototypes (classes with images).
func (x *Index) Len() int {
	if p := x.current().protos; p != nil {
		return len(p.Classes)
	}
	return 0
}

// Species is a class with the number of images in its prototype.
type Species struct {
	Class
	Count int64 `json:"count"`
}

// Species lists every class (with or without images) in file order. On a read-only index only
// the classes with a prototype are listed.
func (x *Index) Species() []Species {
	st := x.current()
	if st.store == nil {
		out := make([]Species, len(st.protos.Classes))
		for i, c := range st.protos.Classes {
			out[i] = Species{Class: c, Count: st.protos.Counts[i]}
		}
		return out
	}
	out := make([]Species, len(st.store.classes))
	for i, c := range st.store.classes {
		out[i] = Species{Class: c, Count: st.store.counts[i]}
	}
	return out
}

// Search maps the queries (rows of Dim values) into the prototypes' space and returns the k
// nearest prototypes of each, nearest first (search.Flat.Search). queries are not changed. With
// no prototype every slot has id -1.
func (x *Index) Search(ctx context.Context, queries []float32, k int) (dist []float32, ids []int64, err error) {
	return x.SearchInPlace(ctx, slices.Clone(queries), k)
}

// SearchInPlace is Search that maps the queries into the prototypes' space in place (no copy:
// the 138,292 test embeddings of Herbarium 2020 are 283 MB).
func (x *Index) SearchInPlace(ctx context.Context, queries []float32, k int) (dist []float32, ids []int64, err error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	st := x.cur
	d := st.dim()
	if d <= 0 || len(queries)%d != 0 {
		return nil, nil, fmt.Errorf("proto: %d query values are not whole embeddings of the prototypes' dimension %d (another model?)", len(queries), d)
	}
	if st.protos == nil {
		flat := search.NewFlat(d, x.metric)
		return flat.Search(ctx, queries, k)
	}
	if err := st.protos.Transform(queries); err != nil {
		return nil, nil, err
	}
	return st.flat.Search(ctx, queries, k)
}

// Reconstruct returns the prototype of class id (nil when the class has none).
func (x *Index) Reconstruct(id int64) []float32 {
	p := x.current().protos
	if p == nil {
		return nil
	}
	for i, c := range p.Classes {
		if c.ID == id {
			return append([]float32(nil), p.Vectors[i*p.Dim:(i+1)*p.Dim]...)
		}
	}
	return nil
}

// Calibration returns the temperature recorded for the build in use (Temperature 0 when none).
func (x *Index) Calibration() Calibration {
	st := x.current()
	if st.store == nil {
		return Calibration{}
	}
	return st.store.cal
}

// lock takes the advisory lock of the prototype file at path; unlock releases it.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: lock: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: lock: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// fresh returns the current state, read again from the file when another writer replaced it.
// The caller holds the file lock.
func (x *Index) fresh() (*state, error) {
	st := x.current()
	now, err := statFile(x.path)
	if err != nil {
		return nil, err
	}
	if now.same(st.stamp) {
		if !now.exists {
			return st, nil
		}
		// Equal inode, size and time can still be another file: ext4 reuses a freed inode, and
		// file times move by the kernel's tick, so another writer's two saves of one size within a
		// tick look unchanged. The generation in the header, one more at every save, settles it.
		g, err := fileGeneration(x.path)
		if err != nil {
			return nil, err
		}
		if g == st.store.gen {
			return st, nil
		}
	}
	if !now.exists {
		return nil, fmt.Errorf("%s: the prototype file was removed while in use", x.path)
	}
	s, err := Load(x.path) // under the lock: the file is as now says
	if err != nil {
		return nil, err
	}
	if s.dim != st.store.dim || s.model != st.store.model || s.opt != st.store.opt {
		return nil, fmt.Errorf("%s: replaced by a file of another model (%d-d %s, was %d-d %s)", x.path, s.dim, s.model, st.store.dim, st.store.model)
	}
	return x.newState(s, now)
}

// Enrolment is what Enrol did.
type Enrolment struct {
	Species Species
	Created bool
	// Replayed: the idempotency key was already recorded, so nothing was added again.
	Replayed bool
	Added    int
}

// Enrol adds embeddings (rows of Dim values) to the species named c.Name or creates it (see
// Store.Enrol for identity and ids), rebuilds the prototypes, updates the spacing temperature
// when it is in use, and saves the file atomically under the file lock, after reading the file
// again if another writer changed it. key, when not empty, makes a retried enrolment apply once.
// On error nothing changed, in memory or on disk.
func (x *Index) Enrol(c Class, embeddings []float32, key string) (Enrolment, error) {
	if x.readOnly {
		return Enrolment{}, fmt.Errorf("%s: opened read-only", x.path)
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()
	unlock, err := lock(x.path)
	if err != nil {
		return Enrolment{}, err
	}
	defer unlock()
	base, err := x.fresh()
	if err != nil {
		return Enrolment{}, err
	}
	if r, ok := base.store.receipt(key); ok {
		if base != x.current() {
			x.swap(base)
		}
		sp := base.store.species(r.ID)
		return Enrolment{Species: sp, Replayed: true, Added: r.Added}, nil
	}
	s := base.store.clone()
	got, created, err := s.Enrol(c, embeddings)
	if err != nil {
		return Enrolment{}, fmt.Errorf("%s: %w", x.path, err)
	}
	n := len(embeddings) / s.dim
	s.remember(Receipt{Key: key, ID: got.ID, Added: n})
	next, err := x.commit(s, got.ID)
	if err != nil {
		return Enrolment{}, err
	}
	return Enrolment{Species: next.store.species(got.ID), Created: created, Added: n}, nil
}

// commit builds s, refreshes the nearest distances of class changed and the spacing temperature,
// writes the file (one generation on) and publishes the new state. The caller holds the locks.
func (x *Index) commit(s *Store, changed int64) (*state, error) {
	next, err := x.newState(s, stamp{})
	if err != nil {
		return nil, err
	}
	if next.protos != nil {
		s.updateNearest(next.protos, changed)
		if t, ok := s.spacingTemperature(); ok && (s.cal.Source == "" || s.cal.Source == SourceSpacing) {
			s.cal = Calibration{Temperature: t, Source: SourceSpacing, Build: next.build}
		}
	}
	s.gen++
	if err := s.Save(x.path); err != nil {
		if next.flat != nil {
			next.flat.Close()
		}
		return nil, err
	}
	if next.stamp, err = statFile(x.path); err != nil {
		return nil, err
	}
	x.swap(next)
	return next, nil
}

// SetCalibration sets the temperature for the build in use, in memory: the file records it at
// the next enrolment or save (a restart before that chooses it again the same way). Source
// SourceSpacing asks for the spacing heuristic: the nearest distances are computed where not
// known (over at most 4,096 prototypes spread over the classes: O(4,096 × classes × dimension)
// once; every enrolment then keeps them up to date). It returns the calibration set; Temperature
// 0 when the heuristic has fewer than two prototypes.
func (x *Index) SetCalibration(c Calibration) (Calibration, error) {
	if x.readOnly {
		return Calibration{}, fmt.Errorf("%s: opened read-only", x.path)
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()
	base := x.current()
	s := base.store.clone()
	c.Build = base.build
	if c.Source == SourceSpacing {
		if base.protos != nil {
			if err := s.sampleNearest(base.protos, base.flat, 4096); err != nil {
				return Calibration{}, err
			}
		}
		c.Temperature, _ = s.spacingTemperature()
	}
	s.cal = c
	next := *base
	next.store = s
	x.swap(&next)
	return c, nil
}

// species returns class id with its count.
func (s *Store) species(id int64) Species {
	c, _ := s.Class(id)
	return Species{Class: c, Count: s.Count(id)}
}

// updateNearest refreshes the nearest-prototype distances after class changed got new images: its
// own distance is computed against every other prototype, and every known distance of another
// class is lowered when the changed prototype is now nearer (O(classes × dimension)). Another
// class whose nearest was the changed one keeps its old value until it changes itself: exact
// for a new class under plain means, close otherwise.
func (s *Store) updateNearest(p *Prototypes, changed int64) {
	self := -1
	for i, c := range p.Classes {
		if c.ID == changed {
			self = i
		}
	}
	if self < 0 {
		return
	}
	d := p.Dim
	v := p.Vectors[self*d : (self+1)*d]
	best := math.Inf(1)
	for i, c := range p.Classes {
		if i == self {
			continue
		}
		dist := SquaredL2(v, p.Vectors[i*d:(i+1)*d])
		best = min(best, dist)
		if r := s.row[c.ID]; !math.IsNaN(s.nearest[r]) {
			s.nearest[r] = min(s.nearest[r], dist)
		}
	}
	if !math.IsInf(best, 1) {
		s.nearest[s.row[changed]] = best
	}
}

// sampleNearest computes the nearest-prototype distance of up to m prototypes spread evenly over
// the classes whose distance is not known (one k=2 search for all of them).
func (s *Store) sampleNearest(p *Prototypes, f *search.Flat, m int) error {
	n := len(p.Classes)
	if n < 2 {
		return nil
	}
	m = min(m, n)
	d := p.Dim
	var rows []int
	var q []float32
	for i := range m {
		row := i * n / m
		if math.IsNaN(s.nearest[s.row[p.Classes[row].ID]]) {
			rows = append(rows, row)
			q = append(q, p.Vectors[row*d:(row+1)*d]...)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	dist, got, err := f.Search(context.Background(), q, 2)
	if err != nil {
		return err
	}
	for i, row := range rows {
		id := p.Classes[row].ID
		for j := range 2 {
			if g := got[2*i+j]; g >= 0 && g != id {
				s.nearest[s.row[id]] = float64(dist[2*i+j])
				break
			}
		}
	}
	return nil
}

// SquaredL2 is the squared Euclidean distance between two vectors of one length.
func SquaredL2(a, b []float32) float64 {
	var d float64
	for i := range a {
		e := float64(a[i] - b[i])
		d += e * e
	}
	return d
}

// Replace writes s as the new content of the prototype file at path under the writers' lock,
// one generation after the file it replaces: a running server reads it again at its next
// enrolment instead of overwriting it. (`protoherb prototypes` and `prototypes merge`.)
func (s *Store) Replace(path string) error {
	unlock, err := lock(path)
	if err != nil {
		return err
	}
	defer unlock()
	if old, err := readGeneration(path); err == nil {
		s.gen = max(s.gen, old+1)
	}
	return s.Save(path)
}

// readGeneration returns the generation of an existing prototype file (from its header).
func readGeneration(path string) (uint64, error) {
	h, err := safetensors.ReadHeader(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(cmp.Or(h.Meta["generation"], "0"), 10, 64)
}
