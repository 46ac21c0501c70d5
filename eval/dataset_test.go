package eval

import (
	"os"
	"path/filepath"
	"testing"

	"protoherb/dataset"
)

func TestClassesFromDataset(t *testing.T) {
	root := t.TempDir()
	meta := filepath.Join(root, "nybg2020", "train", "metadata.json")
	if err := os.MkdirAll(filepath.Dir(meta), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := dataset.WriteHerbarium2020Metadata(f, dataset.GenerateOptions{Images: 300, Classes: 40, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d, err := dataset.Open(root, dataset.Options{Split: "train"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ClassesFromDataset(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != len(d.Classes) {
		t.Fatalf("%d classes, want %d", len(c), len(d.Classes))
	}
	total := 0
	for _, dc := range d.Classes {
		ci, ok := c[dc.ID]
		if !ok || ci.Name != dc.Name || ci.Genus != dc.Genus || ci.Family != dc.Family {
			t.Fatalf("class %d: %+v, dataset has %+v", dc.ID, ci, dc)
		}
		total += ci.TrainCount
	}
	if total != 300 {
		t.Errorf("train counts sum to %d, want 300", total)
	}
}
