package plot

import (
	"bytes"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"

	"protoherb/metrics"
)

// keep writes a rendered PNG into $PROTOHERB_PLOT_DIR when set, to look at by eye.
func keep(t *testing.T, name string, b []byte) {
	if dir := os.Getenv("PROTOHERB_PLOT_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func decode(t *testing.T, b []byte) (w, h int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	r := img.Bounds()
	return r.Dx(), r.Dy()
}

func writeRun(t *testing.T, dir string, steps int) string {
	t.Helper()
	path := filepath.Join(dir, "metrics.jsonl")
	w, err := metrics.Open(path, metrics.WriterOptions{FlushEvery: math.MaxInt64})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for s := 1; s <= steps; s++ {
		loss := 2.5*math.Exp(-float64(s)/300) + 0.2 + 0.3*rng.Float64()
		w.Write(metrics.Record{Step: int64(s), Phase: "train", Values: map[string]float64{
			"loss": loss, "acc": 1 - loss/3, "lr": 1e-3, "images_per_s": 540}})
		if s%100 == 0 {
			acc := 0.98 - 0.5*math.Exp(-float64(s)/250)
			w.Write(metrics.Record{Step: int64(s), Phase: "val", Values: map[string]float64{
				"loss": loss * 0.9, "acc": acc, "acc_ci95": 0.02 * (1 - acc + 0.2)}})
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCurves(t *testing.T) {
	dir := t.TempDir()
	in := writeRun(t, dir, 1500)
	out := filepath.Join(dir, "curves.png")
	if err := Curves(in, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	keep(t, "curves.png", b)
	if w, h := decode(t, b); w != 990 || h != 440 {
		t.Errorf("curves.png is %dx%d, want 990x440", w, h)
	}
}

func TestCurvesFewPointsAndNaN(t *testing.T) {
	recs := []metrics.Record{
		{Step: 1, Phase: "train", Values: map[string]float64{"loss": 2}},
		{Step: 2, Phase: "train", Values: map[string]float64{"loss": math.NaN()}},
		{Step: 3, Phase: "train", Values: map[string]float64{"loss": 1}},
		{Step: 3, Phase: "val", Values: map[string]float64{"acc": 0.5, "acc_ci95": 0.1}},
		{Step: 6, Phase: "val", Values: map[string]float64{"acc": 0.7, "acc_ci95": 0.05}},
	}
	b, err := CurvesPNG(recs)
	if err != nil {
		t.Fatal(err)
	}
	keep(t, "curves_few.png", b)
	decode(t, b)
}

func TestCurvesErrors(t *testing.T) {
	if _, err := CurvesPNG(nil); err == nil {
		t.Error("no records: no error")
	}
	if _, err := CurvesPNG([]metrics.Record{{Step: 1, Phase: "train", Values: map[string]float64{"lr": 1}}}); err == nil {
		t.Error("no loss or acc: no error")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "curves.png")
	os.WriteFile(out, []byte("old"), 0o644)
	err := Curves(filepath.Join(dir, "missing.jsonl"), out)
	if err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Errorf("missing input: err = %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Error("a failed Curves replaced the previous PNG")
	}
}

func TestBarsAndHeatmap(t *testing.T) {
	b, err := BarsPNG(BarChart{Title: "Macro-F1 by training images per class", XLabel: "train images",
		YLabel: "macro-F1", YMax: 1, Bars: []Bar{
			{"1", 0.05, "n=120"}, {"2-3", 0.12, "n=300"}, {"4-10", 0.31, "n=900"},
			{"11-30", 0.52, "n=2000"}, {"31-100", 0.71, "n=800"}, {">100", 0.9, "n=90"}}})
	if err != nil {
		t.Fatal(err)
	}
	keep(t, "bars.png", b)
	decode(t, b)

	names := []string{"Carex", "Salix", "Eucalyptus", "Solanum", "Euphorbia"}
	vals := [][]float64{{40, 2, 0, 0, 1}, {3, 25, 0, 0, 0}, {0, 0, 12, 1, 0}, {0, 0, 0, 8, 3}, {1, 0, 0, 2, 5}}
	b, err = HeatmapPNG(Heatmap{Title: "Errors by genus", XLabel: "predicted genus", YLabel: "true genus",
		Rows: names, Cols: names, Values: vals})
	if err != nil {
		t.Fatal(err)
	}
	keep(t, "heatmap.png", b)
	decode(t, b)

	if _, err := HeatmapPNG(Heatmap{Rows: names, Cols: names, Values: vals[:2]}); err == nil {
		t.Error("ragged heat map: no error")
	}
	if _, err := BarsPNG(BarChart{}); err == nil {
		t.Error("empty bar chart: no error")
	}
}

func TestRunningMeanIsCentred(t *testing.T) {
	var pts []float64
	for i := range 9 {
		pts = append(pts, float64(i))
	}
	in := make([]float64, len(pts))
	copy(in, pts)
	got := runningMean(toXYs(in), 3)
	// A centred mean of a straight line is the line itself, except nothing lags.
	for i := 1; i < len(in)-1; i++ {
		if got[i].Y != in[i] {
			t.Errorf("point %d: %v, want %v", i, got[i].Y, in[i])
		}
	}
	if got[0].Y != 0.5 || got[8].Y != 7.5 {
		t.Errorf("ends: %v %v, want 0.5 7.5", got[0].Y, got[8].Y)
	}
}

func toXYs(ys []float64) plotter.XYs {
	out := make(plotter.XYs, len(ys))
	for i, y := range ys {
		out[i] = plotter.XY{X: float64(i), Y: y}
	}
	return out
}
