package serve

import (
	"context"

	"protoherb/proto"
)

// Species is one class the service knows, with the number of specimens in its prototype.
type Species = proto.Species

// Store is what the service needs from its prototype file: *proto.Index, which owns the file's
// life (identity of species, the build, search, calibration, locked atomic saves). It is an
// interface so that tests can wrap it.
type Store interface {
	// Species lists the classes in a stable order (with or without specimens).
	Species() []Species
	// Dim is the embedding size; Len the number of prototypes.
	Dim() int
	Len() int
	// Search maps queries into the prototypes' space and returns the k nearest of each.
	Search(ctx context.Context, queries []float32, k int) (dist []float32, ids []int64, err error)
	// Prototypes returns the built prototypes (nil while no class has a specimen).
	Prototypes() *proto.Prototypes
	// Enrol adds embeddings to the species named c.Name, creating it when new, and persists the
	// file before the change is visible; a key already recorded is not applied again.
	Enrol(c proto.Class, embeddings []float32, key string) (proto.Enrolment, error)
	// Calibration is the temperature recorded for the prototypes; SetCalibration sets one.
	Calibration() proto.Calibration
	SetCalibration(c proto.Calibration) (proto.Calibration, error)
}

// enrolEmbeddings applies an enrolment to the store (one at a time) and refreshes the species and,
// when the server chose it, the temperature. Errors are mapped by enrolErr.
func (s *Server) enrolEmbeddings(c proto.Class, embs []float32, key string) (proto.Enrolment, error) {
	s.enrolMu.Lock()
	defer s.enrolMu.Unlock()
	c.ID = proto.AutoID
	got, err := s.cfg.Store.Enrol(c, embs, key)
	if err != nil {
		return got, s.enrolErr(err)
	}
	if !got.Replayed {
		s.met.enrolled.Add(float64(got.Added))
	}
	if err := s.rebuild(); err != nil {
		return got, err
	}
	if s.autoTemp {
		// The store keeps the spacing temperature up to date (O(species × dimension)); a fit on
		// the index describes the training set and is kept.
		if cal := s.cfg.Store.Calibration(); cal.Temperature > 0 {
			s.mu.Lock()
			s.temp, s.tempSource = cal.Temperature, cal.Source
			s.mu.Unlock()
		}
	}
	s.log.Info("serve: enrolled", "species", got.Species.Name, "id", got.Species.ID, "images", got.Added,
		"created", got.Created, "replayed", got.Replayed)
	return got, nil
}
