package proto

import (
	"math"
	"slices"
)

// Calibration is the softmax temperature of a prototype file's users (probability =
// softmax(−distance/T)), recorded in the file so that it survives a restart unchanged.
type Calibration struct {
	Temperature float64 `json:"temperature"`
	// Source says how it was chosen (SourceSpacing, or the user's own words such as "fitted on the
	// specimen index").
	Source string `json:"source"`
	// Build is the prototype build the temperature (and the nearest distances) were computed for.
	Build Build `json:"build"`
}

// SourceSpacing is the Calibration.Source of the prototype-spacing heuristic: the median squared
// distance from a prototype to its nearest other prototype, over ln 20 (a query on a prototype then
// gets about 95% against its nearest rival). An Index keeps it up to date at every enrolment in
// O(classes × dimension).
const SourceSpacing = "median nearest-prototype distance / ln 20"

// Receipt records an enrolment made with an idempotency key, so a retried request is applied once.
type Receipt struct {
	Key   string `json:"key"`
	ID    int64  `json:"id"`
	Added int    `json:"added"`
}

// maxReceipts bounds the receipts a file keeps (the oldest are dropped).
const maxReceipts = 1024

// receipt returns the recorded enrolment with the key.
func (s *Store) receipt(key string) (Receipt, bool) {
	if key == "" {
		return Receipt{}, false
	}
	for _, r := range s.receipts {
		if r.Key == key {
			return r, true
		}
	}
	return Receipt{}, false
}

func (s *Store) remember(r Receipt) {
	if r.Key == "" {
		return
	}
	s.receipts = append(s.receipts, r)
	if n := len(s.receipts) - maxReceipts; n > 0 {
		s.receipts = slices.Delete(s.receipts, 0, n)
	}
}

// spacingTemperature is the SourceSpacing temperature over the known nearest distances of the
// classes with images; not ok when fewer than two are known (1 when they are all 0).
func (s *Store) spacingTemperature() (float64, bool) {
	var known []float64
	for r, d := range s.nearest {
		if s.counts[r] > 0 && !math.IsNaN(d) {
			known = append(known, d)
		}
	}
	if len(known) < 2 {
		return 0, false
	}
	slices.Sort(known)
	if med := known[len(known)/2]; med > 0 {
		return med / math.Log(20), true
	}
	return 1, true
}
