package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchEmbedLastLine(t *testing.T) {
	out, err := run(t, "bench", "embed", "--backbone", "conv4", "--image-size", "16", "--batch", "2",
		"--iters", "1", "--warmup", "0", "--threads", "1", "--python", "")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if v, err := parseFigure(last, "embed:"); err != nil || v <= 0 || !strings.HasSuffix(last, " images/s") {
		t.Errorf("last line %q: want \"embed: <positive> images/s\" (%v)", last, err)
	}
	if !strings.Contains(out, "PyTorch reference skipped") {
		t.Errorf("no word of the skipped reference in:\n%s", out)
	}
}

func TestParseFigure(t *testing.T) {
	text := "torch 1.13 resnet18: median 5.0 ms\ntorch: 36.5 images/s (median 876.7 ms/batch)\n"
	if v, err := parseFigure(text, "torch:"); err != nil || v != 36.5 {
		t.Errorf("parseFigure = %v, %v; want 36.5", v, err)
	}
	if _, err := parseFigure("nothing here\n", "torch:"); err == nil {
		t.Error("no error for output without the figure")
	}
	if _, err := parseFigure("pil: fast images/s", "pil:"); err == nil {
		t.Error("no error for a figure that is not a number")
	}
}

// TestBenchSearchReportsBound runs a tiny search benchmark with the SGEMM bound measured in-process
// (no reference script) and checks that each round pairs a search with an SGEMM and that the bound
// and the headline line are printed.
func TestBenchSearchReportsBound(t *testing.T) {
	out, err := run(t, "bench", "search", "--classes", "300", "--dim", "16", "--queries", "50", "--repeat", "2",
		"--quiet-wait", "0", "--tries", "1", "--sgemm", "64", "--sgemm-script", "")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "reference SGEMM skipped") || !strings.Contains(out, "% of it") {
		t.Errorf("no SGEMM bound in:\n%s", out)
	}
	if strings.Count(out, "search at ") != 2 || !strings.Contains(out, "search / SGEMM in the same round, median: ") {
		t.Errorf("want each of the 2 rounds paired with an SGEMM and their median share in:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if v, err := parseFigure(lines[len(lines)-1], "search:"); err != nil || v <= 0 {
		t.Errorf("last line %q: want \"search: <positive> queries/s\" (%v)", lines[len(lines)-1], err)
	}
}

// TestBenchPredictCreatesDir runs a tiny `bench predict` into a folder that does not exist yet (the
// child predict is this test binary, dispatched by TestMain) and checks its figures.
func TestBenchPredictCreatesDir(t *testing.T) {
	t.Setenv("PROTOHERB_TEST_MAIN", "1")
	dir := filepath.Join(t.TempDir(), "new", "phfix")
	out, err := run(t, "bench", "predict", "--dir", dir, "--classes", "50", "--queries", "200", "--dim", "8",
		"--sgemm", "64", "--sgemm-script", "")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "submission.csv")); err != nil {
		t.Errorf("no submission in --dir: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if v, err := parseFigure(lines[len(lines)-1], "predict:"); err != nil || v <= 0 {
		t.Errorf("last line %q: want \"predict: <positive> s\" (%v)\n%s", lines[len(lines)-1], err, out)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{0.8, 1.05}, 0.925}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

// TestBenchDecode generates two sheets, decodes them (no PIL side) and checks the headline line;
// a folder without JPEGs is an error that names it.
func TestBenchDecode(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, "bench", "decode", "--dir", dir, "--generate", "2", "--size", "32", "--passes", "1",
		"--workers", "2", "--python", "", "--quiet-wait", "0", "--tries", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if v, err := parseFigure(lines[len(lines)-1], "decode:"); err != nil || v <= 0 {
		t.Errorf("last line %q: want \"decode: <positive> images/s\" (%v)", lines[len(lines)-1], err)
	}
	empty := t.TempDir()
	if _, err := run(t, "bench", "decode", "--dir", empty, "--python", ""); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty folder: %v", err)
	}
}
