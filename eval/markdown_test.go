package eval

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/report.md from the current Markdown")

// TestMarkdownGolden renders a report with every section (top-k, ill-defined labels, groups, bins
// with their figure, taxonomy with its figure, confusions) and compares it with testdata/report.md.
func TestMarkdownGolden(t *testing.T) {
	r := &Report{
		Truth: "truth.csv", Pred: "pred.csv", TopKFile: "topk.csv",
		Images: 10, Correct: 7, Accuracy: 0.7, MacroF1: 0.612345, Labels: 6, NoPred: 1, NoTrue: 2,
		TopK: 3, TopKAccuracy: 0.9, AtK: []float64{0.7, 0.8, 0.9},
		TailMax: 3, MediumMax: 10,
		Classes: []ClassScore{{Class: 1, Name: "Acer rubrum"}, {Class: 2, Name: "Acer saccharum"}, {Class: 3}},
		Groups: []GroupScore{{Name: "tail", MinTrain: 1, MaxTrain: 3, Labels: 2, Support: 3, Correct: 1, MacroF1: 0.25, Accuracy: 1.0 / 3},
			{Name: "head", MinTrain: 11, MaxTrain: -1, Labels: 4, Support: 7, Correct: 6, MacroF1: 0.8, Accuracy: 6.0 / 7}},
		Bins:     []GroupScore{{MinTrain: 1, MaxTrain: 1, Labels: 1, Support: 1, MacroF1: 0, Accuracy: 0}},
		Taxonomy: &TaxonomyScore{Errors: 3, SameGenus: 2, FamilyErrors: 3, SameFamily: 3, GenusAccuracy: 0.9, FamilyAccuracy: 1},
		TopConfusions: []Confusion{{True: 1, Pred: 2, Count: 2}, {True: 3, Pred: 1, Count: 1}},
	}
	got := r.Markdown(map[string][]byte{F1ByFreqPNG: nil, GenusConfusion: nil})
	path := filepath.Join("testdata", "report.md")
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("Markdown differs from %s:\n%s", path, got)
	}
}
