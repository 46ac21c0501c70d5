package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"protoherb/infer"
	"protoherb/progress"
	"protoherb/synth"
	"protoherb/torch"
)

// tinyHerbarium generates 10 species of small sheets in the Herbarium 2020 layout, with solution.csv.
func tinyHerbarium(t *testing.T) string {
	t.Helper()
	sc := synth.DefaultConfig()
	sc.Out, sc.Species, sc.Genera, sc.Families = t.TempDir(), 10, 4, 2
	sc.MinPerClass, sc.MaxPerClass, sc.TestPerClass, sc.Size = 4, 12, 2, 96
	sc.Progress = progress.Options{Quiet: true}
	g, err := synth.Generate(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	return g.Root
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var quiet = Options{Bar: progress.Options{Quiet: true}, Reseed: torch.ManualSeed}

func outTo(dir string) Options { o := quiet; o.Out = dir; return o }

// A run with fixed choices writes every output; the same run interrupted in pretraining and resumed
// writes the same submission.
func TestRunFixedAndResume(t *testing.T) {
	data := tinyHerbarium(t)
	cfg := Config{Data: data, Backbone: "conv4", ImageSize: 32, PretrainSteps: 8, TrainSteps: 6, Seed: 3}
	a := filepath.Join(t.TempDir(), "a")
	ra, err := Run(context.Background(), cfg, outTo(a))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.yaml", "split.csv", "submission.csv", "topk.csv", "prototypes.safetensors",
		"report/summary.md", "report/per_class.csv"} {
		if _, err := os.Stat(filepath.Join(a, f)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	if ra.Report == nil || ra.Config.Prototypes == nil || len(ra.Config.Prototypes.ValMacroF1) != len(candidates) {
		t.Fatalf("no report or no build choice: %+v", ra.Config.Prototypes)
	}
	sub := readFile(t, ra.Submission)
	solution := readFile(t, filepath.Join(filepath.Dir(data), "solution.csv"))
	if strings.Count(sub, "\n") != strings.Count(solution, "\n") || !strings.HasPrefix(sub, "Id,Predicted\n") {
		t.Errorf("submission of %d lines for a solution of %d", strings.Count(sub, "\n"), strings.Count(solution, "\n"))
	}

	// Interrupt in pretraining (after its first checkpoint), then resume.
	b := filepath.Join(t.TempDir(), "b")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			if m, _ := filepath.Glob(filepath.Join(b, "runs", "pretrain", "ckpt-*")); len(m) > 0 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, err = Run(ctx, cfg, outTo(b))
	cancel()
	if err == nil {
		t.Log("the run finished before the interruption took effect; resuming a finished run")
	} else if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	o := outTo(b)
	o.Resume = true
	rb, err := Run(context.Background(), Config{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, rb.Submission); got != sub {
		t.Errorf("resumed run's submission differs from the uninterrupted one's")
	}
}

// A budgeted run measures its steps and records every choice; --config repeats it exactly.
func TestRunBudgetAndConfig(t *testing.T) {
	data := tinyHerbarium(t)
	a := filepath.Join(t.TempDir(), "a")
	ra, err := Run(context.Background(), Config{Data: data, Budget: 20 * time.Second, ImageSize: 32}, outTo(a))
	if err != nil {
		t.Fatal(err)
	}
	c := ra.Config
	if c.Backbone != "conv4" || c.PretrainSteps < 1 || c.TrainSteps != -1 || c.Measured.PretrainStepSeconds <= 0 ||
		c.Resize != "squash" || c.TTA != "flip" || c.Prototypes == nil {
		t.Fatalf("plan not recorded: %+v", c)
	}
	// The model file says how to embed: whole images squashed to the square, flip TTA.
	e, err := infer.LoadModel(filepath.Join(a, "runs", "pretrain"), infer.ModelSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Transform().Squash || e.Transform().Fit || !e.FlipTTA {
		t.Errorf("the trained model loads with squash %v, fit %v and flip TTA %v, want squash and flip", e.Transform().Squash, e.Transform().Fit, e.FlipTTA)
	}
	e.Close()
	saved, err := ReadConfig(filepath.Join(a, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if saved.PretrainSteps != c.PretrainSteps || saved.Prototypes.Name != c.Prototypes.Name || saved.Data != data ||
		saved.Resize != "squash" || saved.TTA != "flip" {
		t.Errorf("config.yaml %+v, run %+v", saved, c)
	}
	b := filepath.Join(t.TempDir(), "b")
	rb, err := Run(context.Background(), saved, outTo(b))
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, rb.Submission) != readFile(t, ra.Submission) {
		t.Error("run --config made another submission than the run it came from")
	}
	if _, err := os.Stat(filepath.Join(b, "calibrate-pretrain")); !os.IsNotExist(err) {
		t.Errorf("calibration folder left behind or made again: %v", err)
	}
}

func TestRunHoldoutAndBadConfig(t *testing.T) {
	if _, err := Run(context.Background(), Config{Data: "x", Holdout: 1.5}, outTo(t.TempDir())); err == nil ||
		!strings.Contains(err.Error(), "holdout") {
		t.Errorf("holdout 1.5: %v", err)
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte("data: x\nbackbon: conv4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(p); err == nil || !strings.Contains(err.Error(), "backbon") {
		t.Errorf("unknown key: %v", err)
	}
}

// fitSteps gives pretraining what is left of the budget after the margin, the embedding estimate
// (a third more with flip TTA) and the episodes asked for, and keeps counts already chosen.
func TestFitSteps(t *testing.T) {
	c := Config{Budget: 100 * time.Second, BatchSize: 10, TrainSteps: -1, Measured: Measured{PretrainStepSeconds: 1}}
	fitSteps(&c, 10*time.Second, 100)
	// left = 100·0.92 − 10 − 100 images · (1 s / 10 · 1) = 72 s of pretraining.
	if c.PretrainSteps != 72 || c.TrainSteps != -1 || c.Measured.Images != 100 {
		t.Errorf("steps %d and %d for %d images, want 72 and -1", c.PretrainSteps, c.TrainSteps, c.Measured.Images)
	}
	// Flip TTA: 92 − 10 − 100 images · 0.1 s · 4/3 − 5 episodes · (2-way 1-shot 2-query = 6 images · 0.1 s) = 65.7 s.
	c = Config{Budget: 100 * time.Second, BatchSize: 10, TTA: "flip", TrainSteps: 5, Way: 2, Shot: 1, Query: 2,
		Measured: Measured{PretrainStepSeconds: 1}}
	fitSteps(&c, 10*time.Second, 100)
	if want := 65; c.PretrainSteps != want || c.TrainSteps != 5 {
		t.Errorf("with TTA and 5 episodes: steps %d and %d, want %d and 5", c.PretrainSteps, c.TrainSteps, want)
	}
	c = Config{Budget: time.Second, BatchSize: 10, TrainSteps: -1, Measured: Measured{PretrainStepSeconds: 1}}
	fitSteps(&c, time.Minute, 10)
	if c.PretrainSteps != 1 || c.TrainSteps != -1 {
		t.Errorf("over budget: steps %d and %d, want 1 (at least one) and -1 (kept)", c.PretrainSteps, c.TrainSteps)
	}
}
