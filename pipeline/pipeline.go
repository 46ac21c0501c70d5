package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"protoherb/checkpoint"
	"protoherb/eval"
	"protoherb/predict"
	"protoherb/progress"
	"protoherb/torch"
	"protoherb/train"
)

// Options are how a run is carried out (not what it computes).
type Options struct {
	Out string // output folder (required)
	// Resume continues the run in Out: its config.yaml, and the interrupted stage from its last
	// checkpoint.
	Resume bool
	Bar    progress.Options
	Log    io.Writer // stage headers and the summary (nil: discard)
	// Reseed seeds the generator that initialises weights (commands pass torch.ManualSeed). Run
	// calls it with Config.Seed+i before training stage i, so that a stage does not depend on
	// what ran before it (calibration, an earlier stage): --config and --resume then repeat a run
	// exactly. nil leaves the generator as the caller set it.
	Reseed func(seed uint64) error
}

// Result says what a run wrote.
type Result struct {
	Config     Config
	Submission string
	TopK       string
	Prototypes string
	Model      string       // the trained model's run folder (the last training stage's)
	Report     *eval.Report // nil without labels for the predicted images
	ReportDir  string
	Elapsed    time.Duration
}

// Run executes the whole pipeline (see the package comment).
func Run(ctx context.Context, cfg Config, opt Options) (*Result, error) {
	t0 := time.Now()
	if opt.Out == "" {
		return nil, errors.New("run: no output folder (--out)")
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	cfgPath := filepath.Join(opt.Out, "config.yaml")
	if opt.Resume {
		saved, err := ReadConfig(cfgPath)
		if err != nil {
			return nil, fmt.Errorf("--resume %s: %w", opt.Out, err)
		}
		cfg.Merge(saved)
	}
	if err := defaults(&cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	dev, err := torch.ParseDevice(cfg.Device)
	if err != nil {
		return nil, err
	}
	say := func(f string, a ...any) { fmt.Fprintf(opt.Log, f+"\n", a...) }
	d, err := openData(&cfg)
	if err != nil {
		return nil, err
	}
	say("== data: %d training images (%d fit, %d val, %d holdout), %d to predict; labels: %s",
		len(d.train.Samples), len(d.fit.Samples), len(d.val.Samples), len(d.holdout.Samples), len(d.predict.Samples), orNone(d.truthName))
	if err := d.writeSplit(filepath.Join(opt.Out, "split.csv")); err != nil {
		return nil, err
	}
	if err := plan(ctx, &cfg, d, opt, dev, t0); err != nil {
		return nil, err
	}
	if err := cfg.write(cfgPath); err != nil {
		return nil, err
	}
	say("== plan (%s): %s at %d px, %d pretraining steps, %d episodes of %d-way %d-shot %d-query",
		cfgPath, cfg.Backbone, cfg.ImageSize, cfg.PretrainSteps, cfg.TrainSteps, cfg.Way, cfg.Shot, cfg.Query)
	model, err := trainStages(ctx, &cfg, opt, say)
	if err != nil {
		return nil, err
	}
	res, err := finish(ctx, &cfg, d, model, opt, say)
	if err != nil {
		return nil, err
	}
	if err := cfg.write(cfgPath); err != nil {
		return nil, err
	}
	res.Config, res.Model, res.Elapsed = cfg, model, time.Since(t0)
	say("== done in %s: %s", res.Elapsed.Round(time.Second), res.Submission)
	return res, nil
}

func orNone(s string) string {
	if s == "" {
		return "none (no score)"
	}
	return s
}

func defaults(c *Config) error {
	if c.Data == "" {
		return errors.New("run: no dataset (--data)")
	}
	for _, p := range []*string{&c.Data, &c.Init} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	if c.Budget <= 0 {
		c.Budget = 15 * time.Minute
	}
	if c.Device == "" {
		c.Device = "cpu"
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.ValFrac == 0 {
		c.ValFrac = 0.2
	}
	if c.Resize == "" {
		c.Resize = "squash"
	}
	if c.TTA == "" {
		c.TTA = "flip"
	}
	if c.Resize != "squash" && c.Resize != "fit" && c.Resize != "crop" {
		return fmt.Errorf("run: resize %q: want squash, fit or crop", c.Resize)
	}
	if c.TTA != "flip" && c.TTA != "none" {
		return fmt.Errorf("run: tta %q: want flip or none", c.TTA)
	}
	if c.Holdout < 0 || c.Holdout >= 1 || c.ValFrac < 0 || c.ValFrac >= 1 {
		return fmt.Errorf("run: --holdout %v and val-frac %v must be in [0, 1)", c.Holdout, c.ValFrac)
	}
	return nil
}

// plan makes the choices still open: model, episodes, and step counts from measured step times.
func plan(ctx context.Context, c *Config, d *data, opt Options, dev torch.Device, t0 time.Time) error {
	if err := chooseModel(c, dev); err != nil {
		return err
	}
	chooseEpisodes(c, d)
	if c.TrainSteps == 0 {
		c.TrainSteps = -1 // pretraining on all classes uses the whole budget (package comment)
	}
	if c.PretrainSteps != 0 {
		return nil
	}
	var err error
	if c.PretrainSteps == 0 {
		if c.Measured.PretrainStepSeconds, err = calibrate(ctx, c, opt.Out, train.ModePretrain, opt); err != nil {
			return err
		}
	}
	fitSteps(c, time.Since(t0), len(d.train.Samples)+len(d.predict.Samples))
	return nil
}

// trainStages runs (or resumes, or skips when done) pretraining then episodic training, and returns
// the run folder of the model to use.
func trainStages(ctx context.Context, c *Config, opt Options, say func(string, ...any)) (string, error) {
	model := ""
	stages := []struct {
		mode  string
		steps int
	}{{train.ModePretrain, c.PretrainSteps}, {train.ModeEpisodic, c.TrainSteps}}
	for i, s := range stages {
		if s.steps < 0 {
			continue
		}
		tc := stageConfig(c, opt.Out, s.mode, s.steps)
		if s.mode == train.ModeEpisodic && model != "" {
			tc.Init = model
		}
		done, resume := stageState(tc.RunDir, s.steps)
		if !done {
			say("== %s: %d steps (%s)", s.mode, s.steps, tc.RunDir)
			if !resume {
				if err := os.RemoveAll(tc.RunDir); err != nil {
					return "", err
				}
			}
			if err := reseed(opt, c.Seed+uint64(i)); err != nil {
				return "", fmt.Errorf("run %s: seed %d: %w", s.mode, c.Seed+uint64(i), err)
			}
			r, err := train.Run(ctx, tc, train.Options{Resume: resume, Bar: opt.Bar})
			if err != nil {
				return "", fmt.Errorf("run %s: %w", s.mode, err)
			}
			if r.Interrupted {
				return "", fmt.Errorf("run %s interrupted at step %d: --resume %s continues it: %w", s.mode, r.Step, opt.Out, context.Canceled)
			}
			say("%s: %d steps, %.0f images/s, last loss %.3f", s.mode, r.Step, r.ImagesPerS, r.Loss)
		} else {
			slog.Info("run: stage already done", "stage", s.mode, "run", tc.RunDir)
		}
		model = tc.RunDir
	}
	if model == "" {
		return "", errors.New("run: both training stages are off (pretrain-steps and train-steps -1)")
	}
	return model, nil
}

// reseed calls opt.Reseed when the caller gave one.
func reseed(opt Options, seed uint64) error {
	if opt.Reseed == nil {
		return nil
	}
	return opt.Reseed(seed)
}

// stageState says whether a stage's run folder holds its last checkpoint (done), or an earlier
// one (resume).
func stageState(dir string, steps int) (done, resume bool) {
	got, err := checkpoint.Steps(dir)
	if err != nil || len(got) == 0 {
		return false, false
	}
	return got[0] >= steps, true
}

// finish embeds, chooses the prototype build, predicts and scores.
func finish(ctx context.Context, c *Config, d *data, model string, opt Options, say func(string, ...any)) (*Result, error) {
	say("== prototypes: embedding %d training and %d images to predict", len(d.train.Samples), len(d.predict.Samples))
	e, err := embedAll(ctx, model, d, opt.Bar)
	if err != nil {
		return nil, err
	}
	if c.Prototypes == nil {
		if c.Prototypes, err = chooseBuild(ctx, opt.Out, e, d); err != nil {
			return nil, err
		}
		say("prototype build chosen on %d held-out training images: %s (macro-F1 %v)", len(d.val.Samples), c.Prototypes.Name, c.Prototypes.ValMacroF1)
	}
	res := &Result{Prototypes: filepath.Join(opt.Out, "prototypes.safetensors"),
		Submission: filepath.Join(opt.Out, "submission.csv"), TopK: filepath.Join(opt.Out, "topk.csv")}
	x, err := savePrototypes(res.Prototypes, e, d, e.train, *c.Prototypes)
	if err != nil {
		return nil, err
	}
	r, err := predict.Run(ctx, x, e.predict, 5)
	x.Close()
	if err != nil {
		return nil, err
	}
	if err := r.WriteSubmission(res.Submission); err != nil {
		return nil, err
	}
	if err := r.WriteTopK(res.TopK); err != nil {
		return nil, err
	}
	if d.truth == nil {
		return res, nil
	}
	classes, err := eval.ClassesFromDataset(d.train)
	if err != nil {
		return nil, err
	}
	topk, err := eval.ReadTopKFile(res.TopK)
	if err != nil {
		return nil, err
	}
	rep, err := eval.Evaluate(d.truth, &eval.Labels{Name: res.Submission, IDs: r.IDs, Class: r.Pred},
		eval.Options{Classes: classes, TopK: topk, TailMax: 5, MediumMax: 20})
	if err != nil {
		return nil, err
	}
	res.Report, res.ReportDir = rep, filepath.Join(opt.Out, "report")
	if err := rep.WriteDir(res.ReportDir); err != nil {
		return nil, err
	}
	say("score on %s: macro-F1 %.3f, accuracy %.3f, top-5 %.3f (%s)", d.truthName, rep.MacroF1, rep.Accuracy, rep.TopKAccuracy, res.ReportDir)
	return res, nil
}
