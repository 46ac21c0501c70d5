package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"protoherb/eval"
	"protoherb/proto"
)

// A tiny demo runs every stage end to end and beats the random baseline.
func TestTinyDemoEndToEnd(t *testing.T) {
	out := t.TempDir()
	res, err := Run(context.Background(), Config{
		Out: out, Species: 16, Genera: 6, Families: 3, SheetSize: 160, ImageSize: 32,
		PretrainSteps: 20, TrainSteps: 20, TopClasses: 8, Way: 5, Threads: 1, Quiet: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Methods) != 4 {
		t.Fatalf("%d methods scored, want 4 (random, pretrained, trained, trained-robust)", len(res.Methods))
	}
	byName := map[string]*eval.Report{}
	for _, m := range res.Methods {
		byName[m.Name] = m.Report
		sub, err := eval.ReadLabelsFile(filepath.Join(m.Dir, "submission.csv"))
		if err != nil {
			t.Fatal(err)
		}
		if len(sub.IDs) != m.Report.Images || m.Report.Images == 0 {
			t.Fatalf("%s: %d submission rows for %d test images", m.Name, len(sub.IDs), m.Report.Images)
		}
		if _, err := os.Stat(filepath.Join(m.Dir, "report", "summary.md")); err != nil {
			t.Fatalf("%s: no evaluation report: %v", m.Name, err)
		}
	}
	if byName["trained"].MacroF1 <= byName["random"].MacroF1 {
		t.Fatalf("trained macro-F1 %.3f does not beat random %.3f", byName["trained"].MacroF1, byName["random"].MacroF1)
	}
	rep, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| random |", "| pretrained |", "| trained-robust |", "protoherb serve --model"} {
		if !strings.Contains(string(rep), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, f := range []string{"macro_f1.png", "tail_f1.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("chart %s missing: %v", f, err)
		}
	}
	store, err := proto.Load(res.Prototypes)
	if err != nil {
		t.Fatal(err)
	}
	if store.Len() != 16 {
		t.Fatalf("prototype store has %d classes, want 16", store.Len())
	}
}
