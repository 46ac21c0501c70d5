package train

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A resumed run must know the best accuracy so far: a validation history it cannot read is an
// error (it used to count as "no best yet", so the next validation replaced best/ with a worse
// checkpoint), and a missing history falls back to the accuracy stored in best/ itself.
func TestPreviousBestNeverGuesses(t *testing.T) {
	data := writeFolder(t, 6, 8, 16, stripes(16))
	cfg := tinyConfig(ModeEpisodic, data, filepath.Join(t.TempDir(), "run"))
	cfg.Steps, cfg.EvalEvery, cfg.SaveEvery = 4, 2, 2
	res, err := seededRun(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if res.Best == "" {
		t.Fatal("the run saved no best checkpoint")
	}
	mp := filepath.Join(cfg.RunDir, "metrics.jsonl")
	acc, best, err := previousBest(mp, cfg.RunDir)
	if err != nil || best != res.Best || acc != res.BestAcc {
		t.Fatalf("previousBest = %v, %q, %v; want %v, %q", acc, best, err, res.BestAcc, res.Best)
	}

	good, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(good), "\n")
	corrupt := strings.Join(lines[:1], "") + "{not json\n" + strings.Join(lines[1:], "")
	if err := os.WriteFile(mp, []byte(corrupt), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := previousBest(mp, cfg.RunDir); err == nil || !strings.Contains(err.Error(), "metrics.jsonl") {
		t.Fatalf("a corrupt metrics file gave error %v, want one naming the file", err)
	}
	cfg.Steps = 6
	if _, err := seededRun(context.Background(), cfg, Options{Resume: true, Bar: quiet.Bar}); err == nil {
		t.Fatal("a run resumed over an unreadable metrics file")
	}

	if err := os.Remove(mp); err != nil {
		t.Fatal(err)
	}
	acc, best, err = previousBest(mp, cfg.RunDir)
	if err != nil || best != res.Best || math.Abs(acc-res.BestAcc) > 1e-12 {
		t.Fatalf("without metrics.jsonl: previousBest = %v, %q, %v; want best/'s %v", acc, best, err, res.BestAcc)
	}
	if acc, best, err := previousBest(mp, t.TempDir()); err != nil || best != "" || !math.IsInf(acc, -1) {
		t.Fatalf("a run without best/: previousBest = %v, %q, %v", acc, best, err)
	}
}
