package serve

import (
	"fmt"
	"os"
	"sync"

	"protoherb/proto"
)

// Species is one class the service knows.
type Species struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Genus  string `json:"genus,omitempty"`
	Family string `json:"family,omitempty"`
	// Count is the number of specimens whose embeddings make up the prototype.
	Count int64 `json:"count"`
}

// Store is what the service needs from a prototype store: the classes with their prototypes, the
// query transform into the prototypes' space, and enrolment of specimens that persists before it
// is visible. Implementations are safe for concurrent use.
type Store interface {
	// Species lists the classes in a stable order (with or without specimens).
	Species() []Species
	// Prototypes returns the prototype vectors (len(ids) rows of Dim values, compared by squared
	// L2) and their class ids; classes without specimens have none.
	Prototypes() (vectors []float32, ids []int64)
	// Transform maps query embeddings in place into the prototypes' space.
	Transform(queries []float32) error
	// Dim is the embedding size.
	Dim() int
	// Enrol adds n embeddings (n rows of Dim values) to the class named sp.Name, creating it with
	// sp's genus and family when it does not exist, and persists the store atomically. On error
	// nothing changed, in memory or on disk.
	Enrol(sp Species, embeddings []float32, n int) (Species, error)
}

// ProtoStore is a Store over a prototype file of package proto (what `protoherb prototypes`
// writes): per-class embedding sums and counts, so an enrolment updates a prototype exactly. The
// prototypes are rebuilt with the same proto.Build after every enrolment.
type ProtoStore struct {
	path  string
	build proto.Build
	mu    sync.RWMutex
	st    *proto.Store
	p     *proto.Prototypes // nil while no class has a specimen
}

// OpenProtoStore reads a prototype file and builds its prototypes with the Build recorded in it,
// changed by edit (nil: as recorded).
func OpenProtoStore(path string, edit proto.BuildEdit) (*ProtoStore, error) {
	st, err := proto.Load(path)
	if err != nil {
		return nil, fmt.Errorf("prototypes: %w", err)
	}
	b, err := edit.Apply(st.DefaultBuild())
	if err != nil {
		return nil, err
	}
	s := &ProtoStore{path: path, build: b, st: st}
	if st.Total() > 0 {
		if s.p, err = st.Build(b); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return s, nil
}

// NewProtoStore starts an empty store of dim-dimensional embeddings that will be written to path
// (which must not exist) at the first enrolment, recording b. model is the fingerprint recorded in
// the file.
func NewProtoStore(path string, dim int, model string, opt proto.Options, b proto.Build) (*ProtoStore, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("%s already exists", path)
	}
	st, err := proto.New(dim, model, nil, opt)
	if err != nil {
		return nil, err
	}
	st.SetDefaultBuild(b)
	return &ProtoStore{path: path, build: b, st: st}, nil
}

// Path returns the file the store persists to.
func (s *ProtoStore) Path() string { return s.path }

// Dim is the embedding size.
func (s *ProtoStore) Dim() int { return s.st.Dim() }

// Model is the fingerprint of the model that made the embeddings.
func (s *ProtoStore) Model() string { return s.st.Model() }

// Species lists the classes in store order.
func (s *ProtoStore) Species() []Species {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cs := s.st.Classes()
	out := make([]Species, len(cs))
	for i, c := range cs {
		out[i] = Species{ID: c.ID, Name: c.Name, Genus: c.Genus, Family: c.Family, Count: s.st.Count(c.ID)}
	}
	return out
}

// Prototypes returns the built prototypes.
func (s *ProtoStore) Prototypes() ([]float32, []int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.p == nil {
		return nil, nil
	}
	return s.p.Vectors, s.p.IDs()
}

// Transform maps queries into the prototypes' space (normalisation, centering).
func (s *ProtoStore) Transform(q []float32) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.p == nil {
		return nil
	}
	return s.p.Transform(q)
}

// Enrol adds specimens to a class (created when new) and persists the store atomically. The
// change is made on a copy of the sums, saved, and only then swapped in.
func (s *ProtoStore) Enrol(in Species, emb []float32, n int) (Species, error) {
	d := s.st.Dim()
	if n <= 0 || len(emb) != n*d {
		return Species{}, fmt.Errorf("enrol %s: %d values for %d embeddings of %d", in.Name, len(emb), n, d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := proto.Merge(s.st) // a copy: s.st stays as it is until the file is written
	if err != nil {
		return Species{}, err
	}
	c, _, err := st.Enrol(proto.Class{ID: proto.AutoID, Name: in.Name, Genus: in.Genus, Family: in.Family}, emb)
	if err != nil {
		return Species{}, err
	}
	p, err := st.Build(s.build)
	if err != nil {
		return Species{}, fmt.Errorf("enrol %s: %w", c.Name, err)
	}
	if err := st.Save(s.path); err != nil {
		return Species{}, fmt.Errorf("enrol %s: saving %s: %w", c.Name, s.path, err)
	}
	s.st, s.p = st, p
	return Species{ID: c.ID, Name: c.Name, Genus: c.Genus, Family: c.Family, Count: st.Count(c.ID)}, nil
}
