package train

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"protoherb/checkpoint"
	"protoherb/dataset"
	"protoherb/metrics"
	"protoherb/progress"
	"protoherb/torch"
)

// writeFolder writes an ImageFolder of classes × perClass size×size gray PNGs; pix(class, i, x, y)
// gives each pixel.
func writeFolder(t *testing.T, classes, perClass, size int, pix func(c, i, x, y int) uint8) string {
	t.Helper()
	root := t.TempDir()
	for c := range classes {
		dir := filepath.Join(root, fmt.Sprintf("class%02d", c))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range perClass {
			m := image.NewGray(image.Rect(0, 0, size, size))
			for y := range size {
				for x := range size {
					m.SetGray(x, y, color.Gray{pix(c, i, x, y)})
				}
			}
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%03d.png", i)))
			if err != nil {
				t.Fatal(err)
			}
			if err := png.Encode(f, m); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	return root
}

// stripes: class c is a bright horizontal band at row 2c (mod size) plus noise; learnable, not
// trivial for an untrained network.
func stripes(size int) func(c, i, x, y int) uint8 {
	return func(c, i, x, y int) uint8 {
		r := rand.New(rand.NewPCG(uint64(c*1000+i), uint64(x*size+y)))
		v := 40 + r.IntN(60)
		if y/2 == c%(size/2) {
			v += 140
		}
		return uint8(v)
	}
}

func tinyConfig(mode, data, runDir string) Config {
	c := Defaults(mode)
	c.Data, c.RunDir, c.Format = data, runDir, "imagefolder"
	c.ImageSize, c.Channels, c.Invert = 16, 1, "false"
	c.Threads, c.Workers, c.Seed = 2, 2, 7
	c.EvalEvery, c.EvalEpisodes, c.SaveEvery, c.KeepLast = 10, 20, 10, 5
	switch mode {
	case ModePretrain:
		c.BatchSize, c.Steps, c.LR, c.Warmup, c.Augment, c.ValFrac = 16, 30, 0.05, 3, false, 0.2
	default:
		c.Way, c.Shot, c.Query, c.TestWay, c.TestShot, c.TestQuery = 4, 2, 3, 2, 2, 3
		c.Steps, c.ValFrac = 30, 0.25
	}
	return c
}

var quiet = Options{Bar: progress.Options{Quiet: true}}

// seededRun sets libtorch's threads and seed as the training commands do, then runs.
func seededRun(ctx context.Context, cfg Config, opt Options) (Result, error) {
	torch.SetNumThreads(cfg.Threads)
	if err := torch.ManualSeed(cfg.Seed); err != nil {
		return Result{}, err
	}
	return Run(ctx, cfg, opt)
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func TestEpisodicLossFallsAndFewShot(t *testing.T) {
	data := writeFolder(t, 8, 8, 16, stripes(16))
	cfg := tinyConfig(ModeEpisodic, data, filepath.Join(t.TempDir(), "run"))
	res, err := seededRun(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if res.Step != 30 || len(res.Losses) != 30 {
		t.Fatalf("ran %d steps (%d losses), want 30", res.Step, len(res.Losses))
	}
	first, last := mean(res.Losses[:5]), mean(res.Losses[25:])
	if !(last < first*0.8) {
		t.Errorf("loss did not fall: first steps %.4f, last steps %.4f", first, last)
	}
	for _, f := range []string{"config.yaml", "metrics.jsonl", "curves.png", "best/model.safetensors", checkpoint.Name(30) + "/state.json"} {
		if _, err := os.Stat(filepath.Join(cfg.RunDir, f)); err != nil {
			t.Errorf("run dir: %v", err)
		}
	}
	recs, err := metrics.ReadFile(filepath.Join(cfg.RunDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var train, val int
	for _, r := range recs {
		switch r.Phase {
		case "train":
			train++
		case "val":
			val++
			if _, ok := r.Get("acc_ci95"); !ok {
				t.Errorf("val record without acc_ci95: %v", r.Values)
			}
		}
	}
	if train != 30 || val != 3 {
		t.Errorf("metrics: %d train and %d val records, want 30 and 3", train, val)
	}
	// The trained model on its own training data, 4-way 1-shot.
	fs, err := FewShot(context.Background(), FewShotOptions{Model: cfg.RunDir, Data: data, Format: "imagefolder",
		Ways: []int{4}, Shots: []int{1}, Query: 2, Episodes: 20, Seed: 1, Bar: quiet.Bar})
	if err != nil {
		t.Fatal(err)
	}
	if st := fs.Tasks[0].Stats; len(fs.Tasks) != 1 || st.Episodes != 20 || st.Acc < 0.5 {
		t.Errorf("fewshot on the training classes: %+v", fs.Tasks)
	}
}

// flatRun trains one episodic step on classes flat grey classes (every image of a class identical,
// so each query sits exactly on its prototype) and returns the data and the run's config.
func flatRun(t *testing.T, classes int) (string, Config) {
	t.Helper()
	data := writeFolder(t, classes, 4, 16, func(c, i, x, y int) uint8 { return uint8(20 + 40*c) })
	cfg := tinyConfig(ModeEpisodic, data, filepath.Join(t.TempDir(), "run"))
	cfg.Steps, cfg.EvalEvery, cfg.ValFrac, cfg.Way, cfg.Shot, cfg.Query = 1, 0, 0, 3, 1, 1
	if _, err := seededRun(context.Background(), cfg, quiet); err != nil {
		t.Fatal(err)
	}
	return data, cfg
}

func TestFewShotTriviallySeparable(t *testing.T) {
	data, cfg := flatRun(t, 6)
	fs, err := FewShot(context.Background(), FewShotOptions{Model: filepath.Join(cfg.RunDir, checkpoint.Name(1)), Data: data,
		Format: "imagefolder", Ways: []int{2, 5}, Shots: []int{1, 3}, Query: 1, Episodes: 50, Seed: 3, Bar: quiet.Bar})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.Tasks) != 4 {
		t.Fatalf("%d tasks, want 4 (2 ways × 2 shots)", len(fs.Tasks))
	}
	for _, task := range fs.Tasks {
		if task.Stats.Acc != 1 || task.Stats.CI95 != 0 || task.Classes != 6 {
			t.Errorf("trivially separable, %d-way %d-shot: %v over %d classes, want 100%%", task.Way, task.Shot, task.Stats, task.Classes)
		}
	}
}

func TestPretrainLossFallsAndInitsTrain(t *testing.T) {
	data := writeFolder(t, 5, 10, 16, stripes(16))
	cfg := tinyConfig(ModePretrain, data, filepath.Join(t.TempDir(), "pre"))
	cfg.TopClasses = 4
	res, err := seededRun(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	first, last := mean(res.Losses[:5]), mean(res.Losses[25:])
	if !(last < first*0.8) {
		t.Errorf("pretrain loss did not fall: %.4f → %.4f", first, last)
	}
	if res.Best == "" {
		t.Error("pretrain kept no best checkpoint")
	}
	tc := tinyConfig(ModeEpisodic, data, filepath.Join(t.TempDir(), "ep"))
	tc.Init, tc.Steps, tc.EvalEvery = cfg.RunDir, 2, 0
	if _, err := seededRun(context.Background(), tc, quiet); err != nil {
		t.Fatalf("train --init from a pretrain run: %v", err)
	}
}

// TestResumeIsExact interrupts runs mid-step (the SIGINT path: the context ends while the step loads
// its images) and checks that the checkpoint it leaves resumes to the uninterrupted losses.
func TestResumeIsExact(t *testing.T) {
	data := writeFolder(t, 6, 8, 16, stripes(16))
	for _, tc := range []struct {
		name  string
		mode  string
		edit  func(*Config)
		done  int  // steps done when the run is cut (checkpoints every 4 steps)
		ahead bool // the cut run loads ahead, the uninterrupted one synchronously
	}{
		{"episodic in memory", ModeEpisodic, func(c *Config) {}, 6, false},
		{"pretrain from files with augmentation", ModePretrain, func(c *Config) {
			c.Augment, c.Sampling, c.Optimizer, c.InMemory = true, "plain", "adamw", "false"
		}, 6, false},
		// Cut right after a periodic checkpoint, taken while the next batch was pending.
		{"episodic from files, the cut run loading ahead", ModeEpisodic, func(c *Config) {
			c.Augment, c.InMemory = true, "false"
		}, 8, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(tc.mode, data, filepath.Join(t.TempDir(), "full"))
			tc.edit(&cfg)
			cfg.Steps, cfg.SaveEvery, cfg.EvalEvery = 16, 4, 4
			fo := quiet
			if tc.ahead {
				synchronous := false
				fo.loadAhead = &synchronous
			}
			full, err := seededRun(context.Background(), cfg, fo)
			if err != nil {
				t.Fatal(err)
			}
			cfg.RunDir = filepath.Join(t.TempDir(), "cut")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			o := quiet
			if tc.ahead {
				// The uninterrupted run loaded synchronously: the same losses show that loading
				// ahead draws the same batches, and resuming shows checkpoints hold the right
				// generator state while a batch is pending.
				o.loadAhead = &tc.ahead
			}
			o.beforeStep = func(step int) {
				if step == tc.done+1 {
					cancel()
				}
			}
			part, err := seededRun(ctx, cfg, o)
			if err != nil {
				t.Fatal(err)
			}
			if !part.Interrupted || part.Step != tc.done {
				t.Fatalf("interrupted run: step %d interrupted %v, want step %d", part.Step, part.Interrupted, tc.done)
			}
			ck, path, err := checkpoint.LoadLatest(cfg.RunDir)
			if err != nil {
				t.Fatalf("the interrupted run left no loadable checkpoint: %v", err)
			}
			ck.Free()
			if filepath.Base(path) != checkpoint.Name(tc.done) {
				t.Fatalf("newest checkpoint %s, want step %d", path, tc.done)
			}
			o2 := o
			o2.beforeStep = nil
			o2.Resume = true
			rest, err := seededRun(context.Background(), cfg, o2)
			if err != nil {
				t.Fatal(err)
			}
			if len(rest.Losses) != 16-tc.done {
				t.Fatalf("resumed run took %d steps, want %d", len(rest.Losses), 16-tc.done)
			}
			for i, l := range rest.Losses {
				if l != full.Losses[tc.done+i] {
					t.Errorf("step %d: resumed loss %.9g, uninterrupted %.9g", tc.done+1+i, l, full.Losses[tc.done+i])
				}
			}
			recs, err := metrics.ReadFile(filepath.Join(cfg.RunDir, "metrics.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range recs {
				if r.Phase == "train" {
					n++
				}
			}
			if n != 16 {
				t.Errorf("metrics after resume: %d train records, want 16", n)
			}
		})
	}
}

func TestNaNLossStopsAndKeepsLastGoodCheckpoint(t *testing.T) {
	data := writeFolder(t, 6, 8, 16, stripes(16))
	cfg := tinyConfig(ModeEpisodic, data, filepath.Join(t.TempDir(), "run"))
	cfg.Optimizer, cfg.LR, cfg.Schedule, cfg.SaveEvery, cfg.EvalEvery, cfg.Steps = "sgd", 1e30, "constant", 1, 0, 10
	_, err := seededRun(context.Background(), cfg, quiet)
	if err == nil {
		t.Fatal("a run with lr 1e30 finished without error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "NaN") && !strings.Contains(msg, "Inf") {
		t.Errorf("error does not name the bad loss: %v", err)
	}
	steps, _ := checkpoint.Steps(cfg.RunDir)
	if len(steps) == 0 {
		t.Fatalf("no checkpoint kept (error: %v)", err)
	}
	if !strings.Contains(msg, checkpoint.Name(steps[0])) || !strings.Contains(msg, fmt.Sprintf("step %d", steps[0]+1)) {
		t.Errorf("error %q should name step %d and the last good checkpoint %s", msg, steps[0]+1, checkpoint.Name(steps[0]))
	}
	ck, _, err := checkpoint.LoadLatest(cfg.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Free()
	if m := ck.Metrics["loss"]; math.IsNaN(m) || math.IsInf(m, 0) {
		t.Errorf("the kept checkpoint has loss %v", m)
	}
}

func TestConfigFileAndValidation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(p, []byte("way: 20\nshot: 1\ndistance: cosine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ReadConfig(p, Defaults(ModeEpisodic))
	if err != nil {
		t.Fatal(err)
	}
	if c.Way != 20 || c.Shot != 1 || c.Distance != "cosine" || c.Query != 5 {
		t.Errorf("config file: %+v", c)
	}
	if err := os.WriteFile(p, []byte("wya: 20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(p, Defaults(ModeEpisodic)); err == nil || !strings.Contains(err.Error(), "wya") {
		t.Errorf("unknown key: %v", err)
	}
	c = Defaults(ModeEpisodic)
	c.Data, c.RunDir, c.Way = "x", "y", 1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "way") {
		t.Errorf("validate 1-way: %v", err)
	}
	c = Defaults(ModeEpisodic)
	c.Data, c.RunDir, c.Fit, c.Squash = "x", "y", true, true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "fit and squash") {
		t.Errorf("validate fit with squash: %v", err)
	}
	if _, err := seededRun(context.Background(), Config{Mode: "bogus"}, quiet); err == nil {
		t.Error("bogus mode accepted")
	}
	var e error = errNonFinite
	if !errors.Is(fmt.Errorf("%w: x", e), errNonFinite) {
		t.Error("wrap")
	}
}

// TestMemoryImagesMatchFiles checks that images served from memory, with each sample's rotation
// applied at batch time, equal the ones imageio's loader decodes and rotates from the files.
func TestMemoryImagesMatchFiles(t *testing.T) {
	data := writeFolder(t, 2, 3, 16, func(c, i, x, y int) uint8 { return uint8(x*13 + y*3 + c*50 + i*7) })
	d, err := dataset.Open(data, dataset.Options{Format: "imagefolder"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.Samples {
		d.Samples[i].Rotate = 90 * (i % 4)
	}
	o := ImageOptions{Size: 12, Channels: 1, Invert: true, Workers: 2, Bar: progress.Options{Quiet: true}}
	files, err := NewImages(context.Background(), d, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	o.InMemory = true
	mem, err := NewImages(context.Background(), d, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	idx := []int{5, 0, 3, 2, 1, 4, 3}
	a, err := files.Load(context.Background(), idx, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mem.Load(context.Background(), idx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) || len(a) != len(idx)*144 {
		t.Fatalf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("value %d (image %d, sample %d rotated %d): files %v, memory %v", i, i/144, idx[i/144], d.Samples[idx[i/144]].Rotate, a[i], b[i])
		}
	}
}
