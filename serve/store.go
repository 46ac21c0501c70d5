package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"protoherb/nn"
	"protoherb/search"
	"protoherb/torch"
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

// Store is what the service needs from a prototype store: the classes with their prototypes, and
// enrolment of specimens that persists before it is visible. Implementations are safe for
// concurrent use.
type Store interface {
	// Species lists the classes in a stable order.
	Species() []Species
	// Prototypes returns the prototype vectors (len(ids) rows of Dim values) and their class ids.
	Prototypes() (vectors []float32, ids []int64)
	// Dim is the embedding size.
	Dim() int
	// Metric is the distance the prototypes are compared with.
	Metric() search.Metric
	// Enrol adds n embeddings (n rows of Dim values) to the class named sp.Name, creating it with
	// sp's genus and family when it does not exist, and persists the store atomically. On error
	// nothing changed, in memory or on disk.
	Enrol(sp Species, embeddings []float32, n int) (Species, error)
}

// FileStore is a Store kept in one safetensors file: per-class embedding sums and counts, so that a
// prototype (the mean) is updated exactly when specimens are added.
//
// Layout: tensors "sums" F32 [C,D], "counts" I64 [C], "ids" I64 [C]; metadata "format"
// (FileStoreFormat), "metric" ("l2" or "cosine") and "classes", a JSON array of
// {"id","name","genus","family"} in row order.
type FileStore struct {
	path   string
	mu     sync.RWMutex
	dim    int
	metric search.Metric
	sp     []Species   // row order
	sums   [][]float64 // per row, D values
	byName map[string]int
}

// FileStoreFormat identifies FileStore's layout.
const FileStoreFormat = "protoherb-prototypes/1"

// NewFileStore creates an empty store of dim-dimensional prototypes at path and writes it.
func NewFileStore(path string, dim int, metric search.Metric) (*FileStore, error) {
	if dim <= 0 {
		return nil, fmt.Errorf("%s: prototype dimension %d must be positive", path, dim)
	}
	s := &FileStore{path: path, dim: dim, metric: metric, byName: map[string]int{}}
	if err := s.write(s.sp, s.sums); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenFileStore reads a store written by FileStore.
func OpenFileStore(path string) (*FileStore, error) {
	ps, meta, err := nn.ReadSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("prototypes: %w", err)
	}
	defer nn.FreeParams(ps)
	t := map[string]*torch.Tensor{}
	for _, p := range ps {
		t[p.Name] = p.T
	}
	if f := meta["format"]; f != FileStoreFormat {
		return nil, fmt.Errorf("%s: prototype file format %q, want %q", path, f, FileStoreFormat)
	}
	metric, err := search.ParseMetric(cmp(meta["metric"], "l2"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var classes []Species
	if err := json.Unmarshal([]byte(meta["classes"]), &classes); err != nil {
		return nil, fmt.Errorf("%s: classes metadata: %w", path, err)
	}
	sums, counts, ids := t["sums"], t["counts"], t["ids"]
	if sums == nil || counts == nil || ids == nil {
		return nil, fmt.Errorf("%s: want tensors sums, counts and ids", path)
	}
	sh := sums.Shape()
	if len(sh) != 2 || sh[1] <= 0 {
		return nil, fmt.Errorf("%s: sums has shape %v, want [C, D]", path, sh)
	}
	c, d := int(sh[0]), int(sh[1])
	sv, err := sums.ToDType(torch.Float32).Float32s()
	if err != nil {
		return nil, fmt.Errorf("%s: sums: %w", path, err)
	}
	cv, err := counts.Int64s()
	if err != nil {
		return nil, fmt.Errorf("%s: counts: %w", path, err)
	}
	iv, err := ids.Int64s()
	if err != nil {
		return nil, fmt.Errorf("%s: ids: %w", path, err)
	}
	if len(cv) != c || len(iv) != c || len(classes) != c {
		return nil, fmt.Errorf("%s: %d prototypes but %d counts, %d ids and %d classes", path, c, len(cv), len(iv), len(classes))
	}
	s := &FileStore{path: path, dim: d, metric: metric, byName: map[string]int{}}
	for i := range c {
		sp := classes[i]
		if sp.ID != iv[i] {
			return nil, fmt.Errorf("%s: row %d has id %d but class %q says %d", path, i, iv[i], sp.Name, sp.ID)
		}
		if cv[i] <= 0 {
			return nil, fmt.Errorf("%s: class %d (%s) has %d images", path, sp.ID, sp.Name, cv[i])
		}
		sp.Count = cv[i]
		row := make([]float64, d)
		for j := range d {
			v := float64(sv[i*d+j])
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s: class %d (%s) has a non-finite prototype", path, sp.ID, sp.Name)
			}
			row[j] = v
		}
		s.sp = append(s.sp, sp)
		s.sums = append(s.sums, row)
		s.byName[key(sp.Name)] = i
	}
	return s, nil
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func key(name string) string { return strings.ToLower(strings.Join(strings.Fields(name), " ")) }

// Path returns the file the store persists to.
func (s *FileStore) Path() string { return s.path }

// Dim is the embedding size.
func (s *FileStore) Dim() int { return s.dim }

// Metric is the distance the prototypes are compared with.
func (s *FileStore) Metric() search.Metric { return s.metric }

// Species lists the classes in file order.
func (s *FileStore) Species() []Species {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.sp)
}

// Prototypes returns the class means.
func (s *FileStore) Prototypes() ([]float32, []int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := make([]float32, 0, len(s.sp)*s.dim)
	ids := make([]int64, len(s.sp))
	for i, sp := range s.sp {
		ids[i] = sp.ID
		for _, x := range s.sums[i] {
			v = append(v, float32(x/float64(sp.Count)))
		}
	}
	return v, ids
}

// Enrol adds specimens to a class (created when new) and persists the store atomically.
func (s *FileStore) Enrol(in Species, emb []float32, n int) (Species, error) {
	name := strings.Join(strings.Fields(in.Name), " ")
	if name == "" {
		return Species{}, errors.New("enrol: the species needs a name")
	}
	if n <= 0 || len(emb) != n*s.dim {
		return Species{}, fmt.Errorf("enrol %s: %d values for %d embeddings of %d", name, len(emb), n, s.dim)
	}
	for i, v := range emb {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return Species{}, fmt.Errorf("enrol %s: image %d has a non-finite embedding", name, i/s.dim)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := slices.Clone(s.sp)
	sums := slices.Clone(s.sums)
	row, ok := s.byName[key(name)]
	if !ok {
		var next int64
		for _, c := range sp {
			next = max(next, c.ID+1)
		}
		sp = append(sp, Species{ID: next, Name: name, Genus: strings.TrimSpace(in.Genus), Family: strings.TrimSpace(in.Family)})
		sums = append(sums, make([]float64, s.dim))
		row = len(sp) - 1
	} else {
		// Fill taxonomy that was missing; never silently change what is recorded.
		c := sp[row]
		if g := strings.TrimSpace(in.Genus); g != "" && c.Genus != "" && !strings.EqualFold(g, c.Genus) {
			return Species{}, fmt.Errorf("enrol %s: genus %q differs from the recorded %q", name, g, c.Genus)
		}
		if f := strings.TrimSpace(in.Family); f != "" && c.Family != "" && !strings.EqualFold(f, c.Family) {
			return Species{}, fmt.Errorf("enrol %s: family %q differs from the recorded %q", name, f, c.Family)
		}
		c.Genus = cmp(c.Genus, strings.TrimSpace(in.Genus))
		c.Family = cmp(c.Family, strings.TrimSpace(in.Family))
		sp[row] = c
	}
	sum := slices.Clone(sums[row])
	for i := range n {
		for j := range s.dim {
			sum[j] += float64(emb[i*s.dim+j])
		}
	}
	sums[row] = sum
	sp[row].Count += int64(n)
	if err := s.write(sp, sums); err != nil {
		return Species{}, err
	}
	s.sp, s.sums = sp, sums
	s.byName[key(name)] = row
	return sp[row], nil
}

// write persists a state atomically (temporary file + rename, by nn.SaveSafetensors).
func (s *FileStore) write(sp []Species, sums [][]float64) error {
	c := len(sp)
	flat := make([]float32, 0, c*s.dim)
	counts := make([]int64, c)
	ids := make([]int64, c)
	classes := make([]Species, c)
	for i, x := range sp {
		for _, v := range sums[i] {
			flat = append(flat, float32(v))
		}
		counts[i], ids[i] = x.Count, x.ID
		classes[i] = Species{ID: x.ID, Name: x.Name, Genus: x.Genus, Family: x.Family}
	}
	meta, err := json.Marshal(classes)
	if err != nil {
		return err
	}
	sc := torch.NewScope()
	defer sc.Close()
	var ps []nn.Param
	if c == 0 {
		// Empty tensors are made with Zeros: torch.FromFloat32 of no data leaks a runtime.Pinner.
		ps = []nn.Param{
			{Name: "sums", T: torch.Zeros(sc, torch.Float32, torch.CPU, 0, int64(s.dim))},
			{Name: "counts", T: torch.Zeros(sc, torch.Int64, torch.CPU, 0)},
			{Name: "ids", T: torch.Zeros(sc, torch.Int64, torch.CPU, 0)},
		}
	} else {
		ps = []nn.Param{
			{Name: "sums", T: torch.FromFloat32(sc, flat, int64(c), int64(s.dim))},
			{Name: "counts", T: torch.FromInt64(sc, counts, int64(c))},
			{Name: "ids", T: torch.FromInt64(sc, ids, int64(c))},
		}
	}
	err = nn.SaveSafetensors(s.path, ps, map[string]string{
		"format": FileStoreFormat, "metric": s.metric.String(), "classes": string(meta),
	})
	if err != nil {
		return fmt.Errorf("save prototypes %s: %w", s.path, err)
	}
	return nil
}
