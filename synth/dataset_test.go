package synth_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"protoherb/dataset"
	"protoherb/progress"
	"protoherb/synth"
)

// The generated herbarium opens with protoherb's Herbarium 2020 reader, names exact after its
// Latin-1 transcoding, images where the metadata says.
func TestHerbarium2020ReaderOpensIt(t *testing.T) {
	cfg := synth.DefaultConfig()
	cfg.Out = t.TempDir()
	cfg.Species, cfg.Genera, cfg.Families = 25, 8, 3
	cfg.MaxPerClass, cfg.Size = 10, 80
	cfg.Progress = progress.Options{Quiet: true}
	res, err := synth.Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	train, err := dataset.Open(cfg.Out, dataset.Options{Split: "train"})
	if err != nil {
		t.Fatal(err)
	}
	if train.Format != dataset.FormatHerbarium2020 {
		t.Errorf("format %q, want %q", train.Format, dataset.FormatHerbarium2020)
	}
	if len(train.Classes) != len(res.Categories) {
		t.Fatalf("%d classes, want %d", len(train.Classes), len(res.Categories))
	}
	byID := map[int64]synth.Category{}
	for _, c := range res.Categories {
		byID[int64(c.ID)] = c
	}
	for _, c := range train.Classes {
		want := byID[c.ID]
		if c.Name != want.Name || c.Genus != want.Genus || c.Family != want.Family {
			t.Errorf("class %d: reader says %q %q %q, want %q %q %q", c.ID, c.Name, c.Genus, c.Family, want.Name, want.Genus, want.Family)
		}
	}
	if len(train.Samples) != res.TrainImages {
		t.Fatalf("%d train samples, want %d", len(train.Samples), res.TrainImages)
	}
	for _, s := range train.Samples {
		cat := int(train.Classes[s.Label].ID)
		if s.Path != filepath.Join(res.Root, "train", fmt.Sprintf("images/%03d/%02d/%d.jpg", cat/100, cat%100, s.ID)) {
			t.Fatalf("sample %d of class %d at %s", s.ID, cat, s.Path)
		}
	}
	test, err := dataset.Open(cfg.Out, dataset.Options{Split: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(test.Samples) != res.TestImages {
		t.Fatalf("%d test samples, want %d", len(test.Samples), res.TestImages)
	}
}
