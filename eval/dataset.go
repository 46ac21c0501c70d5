package eval

import (
	"fmt"
	"math"

	"protoherb/dataset"
)

// ClassesFromDataset returns the classes of a (training) split with their taxonomy and the number of
// labelled images of each, for Options.Classes.
func ClassesFromDataset(d *dataset.Dataset) (Classes, error) {
	counts := d.ClassCounts()
	out := make(Classes, len(d.Classes))
	for i, c := range d.Classes {
		if c.ID < 0 || c.ID > math.MaxInt32 {
			return nil, fmt.Errorf("%s: class %q has id %d, not a class id", d.Root, c.Name, c.ID)
		}
		out[c.ID] = ClassInfo{Name: c.Name, Genus: c.Genus, Family: c.Family, TrainCount: counts[i]}
	}
	return out, nil
}
