package main

import (
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
