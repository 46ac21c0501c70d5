package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"protoherb/dataset"
	"protoherb/eval"
	"protoherb/infer"
	"protoherb/proto"
	"protoherb/serve"
)

// A tiny demo runs every stage end to end and beats the random baseline.
func TestTinyDemoEndToEnd(t *testing.T) {
	out := t.TempDir()
	res, err := Run(context.Background(), Config{
		Out: out, Species: 16, Genera: 6, Families: 3, SheetSize: 160, ImageSize: 32,
		PretrainSteps: 40, TrainSteps: 20, Threads: 1, Quiet: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Methods) != 2 {
		t.Fatalf("%d methods scored, want 2 (random, run)", len(res.Methods))
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
	if byName["run"].MacroF1 <= byName["random"].MacroF1 {
		t.Fatalf("run's macro-F1 %.3f does not beat random %.3f", byName["run"].MacroF1, byName["random"].MacroF1)
	}
	rep, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| random |", "| run |", "protoherb run", "config.yaml", "protoherb serve --model"} {
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
	checkServeMatchesSubmission(t, res)
}

// checkServeMatchesSubmission serves the demo's model and prototype file as the report suggests
// (no build flags) and checks that /v1/identify gives every test image the top-1 of the
// run's submission: the server applies the build recorded in the file.
func checkServeMatchesSubmission(t *testing.T, res *Result) {
	t.Helper()
	sub, err := eval.ReadLabelsFile(filepath.Join(res.Run, "submission.csv"))
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[int64]int64, len(sub.IDs))
	for i, id := range sub.IDs {
		want[id] = sub.Class[i]
	}
	s, closeAll, err := serve.Open(serve.Files{Model: res.Model, Prototypes: res.Prototypes},
		infer.ModelSpec{ChannelsLast: true}, serve.Config{Temperature: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	test, err := dataset.Open(res.Data, dataset.Options{Split: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var wrong int
	for _, smp := range test.Samples {
		b, err := os.ReadFile(smp.Path)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(ts.URL+"/v1/identify?k=1", "image/jpeg", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var out serve.IdentifyResponse
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(out.Species) == 0 {
			t.Fatalf("identify %s: status %d, %v", smp.Path, resp.StatusCode, err)
		}
		if got := out.Species[0].ID; got != want[smp.ID] {
			wrong++
			if wrong <= 3 {
				t.Errorf("test image %d: served top-1 %d, run's submission %d", smp.ID, got, want[smp.ID])
			}
		}
	}
	if wrong > 0 {
		t.Fatalf("%d of %d test images: the server's top-1 differs from run's submission", wrong, len(test.Samples))
	}
}
