// Package demo runs protoherb on a generated herbarium, with no downloads: synth, then `run` (package
// pipeline: pretrain → prototypes → predict → evaluate within a time budget), and writes a short
// report beside a baseline computed in the same run (a random guess).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"protoherb/dataset"
	"protoherb/eval"
	"protoherb/pipeline"
	"protoherb/predict"
	"protoherb/progress"
	"protoherb/synth"
)

// Config sizes a demo. Defaults (zero values) make one that runs in a few minutes on 2 cores.
type Config struct {
	Out                       string // output folder (required)
	Species, Genera, Families int
	SheetSize                 int           // long side of the generated sheets, px
	ImageSize                 int           // model input, px
	Budget                    time.Duration // run's budget for training, embedding and prediction
	// PretrainSteps and TrainSteps fix run's step counts instead of fitting them to the budget
	// (PretrainSteps 0: fitted; TrainSteps 0: none, run's default).
	PretrainSteps, TrainSteps int
	Threads                   int
	Seed                      uint64
	Quiet                     bool      // no progress bars
	Log                       io.Writer // where stage headers and the summary go (nil: discard)
	// Reseed seeds libtorch's generator before each training stage (pipeline.Options.Reseed).
	Reseed func(seed uint64) error
}

func (c *Config) defaults() {
	d := func(v *int, x int) {
		if *v == 0 {
			*v = x
		}
	}
	d(&c.Species, 200)
	d(&c.Genera, 60)
	d(&c.Families, 18)
	d(&c.SheetSize, 320)
	d(&c.ImageSize, 64)
	if c.Budget == 0 {
		c.Budget = 4 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Training-count bounds of the demo's tail and medium groups.
const (
	DemoTailMax   = 3
	DemoMediumMax = 15
)

// Method is one way of predicting, scored on the test set.
type Method struct {
	Name   string
	Note   string
	Report *eval.Report
	Dir    string // its submission, top-k and evaluation report
}

// Result is what a demo produced.
type Result struct {
	Data       string // the generated herbarium (nybg2020 layout)
	Run        string // run's output folder (config.yaml, runs/, submission, report)
	Model      string // the trained model's run folder (for serve)
	Prototypes string // its prototypes, with run's chosen build recorded (for serve)
	Config     pipeline.Config
	Report     string // report.md
	Methods    []Method
	Elapsed    time.Duration
}

// Run executes the demo. Its caller sets libtorch's threads (cfg.Threads).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	if cfg.Out == "" {
		return nil, errors.New("demo: no output folder")
	}
	t0 := time.Now()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	bar := progress.Options{Quiet: cfg.Quiet}
	res := &Result{Data: filepath.Join(cfg.Out, "data"), Run: filepath.Join(cfg.Out, "run")}
	stage := func(n int, what string) { fmt.Fprintf(cfg.Log, "\n== %d/4 %s\n", n, what) }

	stage(1, "synth: a generated herbarium in the Herbarium 2020 layout")
	sc := synth.DemoConfig()
	sc.Out, sc.Species, sc.Genera, sc.Families, sc.Size, sc.Seed = res.Data, cfg.Species, cfg.Genera, cfg.Families, cfg.SheetSize, cfg.Seed
	sc.Progress = bar
	gen, err := synth.Generate(ctx, sc)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "%d species, %d train and %d test images in %s\n", len(gen.Categories), gen.TrainImages, gen.TestImages, gen.Root)

	trainDS, testDS, truth, opt, err := scoring(gen)
	if err != nil {
		return nil, err
	}
	stage(2, "baseline: a random species for every test image")
	random, err := scoreMethod(filepath.Join(cfg.Out, "random"), truth, randomGuess(testDS, trainDS, cfg.Seed), opt)
	if err != nil {
		return nil, err
	}
	random.Name, random.Note = "random", "a uniformly random species per test image"
	res.Methods = append(res.Methods, random)

	stage(3, fmt.Sprintf("run: pretrain, prototypes, predict and evaluate within %s", cfg.Budget))
	if err := runPipeline(ctx, cfg, res, gen.Root, bar); err != nil {
		return nil, err
	}
	m, err := scoreFiles(res.Run, truth, opt)
	if err != nil {
		return nil, err
	}
	m.Name = "run"
	m.Note = fmt.Sprintf("protoherb run: %s at %d px, %d pretraining steps on all species, %s prototypes", res.Config.Backbone,
		res.Config.ImageSize, res.Config.PretrainSteps, res.Config.Prototypes.Name)
	if res.Config.TrainSteps > 0 {
		m.Note += fmt.Sprintf(", %d episodes", res.Config.TrainSteps)
	}
	res.Methods = append(res.Methods, m)
	for _, m := range res.Methods {
		fmt.Fprintf(cfg.Log, "%-8s macro-F1 %.3f  accuracy %.3f  top-5 %.3f\n", m.Name, m.Report.MacroF1, m.Report.Accuracy, m.Report.TopKAccuracy)
	}

	stage(4, "report")
	res.Elapsed = time.Since(t0)
	res.Report = filepath.Join(cfg.Out, "report.md")
	if err := writeReport(res, cfg, gen); err != nil {
		return nil, err
	}
	return res, nil
}

// runPipeline runs `protoherb run` on the generated herbarium into res.Run (afresh: a demo is a
// demonstration, not a run to resume).
func runPipeline(ctx context.Context, cfg Config, res *Result, data string, bar progress.Options) error {
	if err := os.RemoveAll(res.Run); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	pc := pipeline.Config{Data: data, Budget: cfg.Budget, Backbone: "conv4", ImageSize: cfg.ImageSize,
		PretrainSteps: cfg.PretrainSteps, TrainSteps: cfg.TrainSteps, Threads: cfg.Threads, Seed: cfg.Seed}
	r, err := pipeline.Run(ctx, pc, pipeline.Options{Out: res.Run, Bar: bar, Log: cfg.Log, Reseed: cfg.Reseed})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	res.Model, res.Prototypes, res.Config = r.Model, r.Prototypes, r.Config
	return nil
}

// scoring opens the generated herbarium's splits and its solution, with the evaluation options of
// the demo: its species have 1 to ~50 training images, so its groups are scaled down from the
// Herbarium defaults (tail 1–3 images, the real long tail; medium 4–15; head above).
func scoring(gen *synth.Result) (trainDS, testDS *dataset.Dataset, truth *eval.Labels, opt eval.Options, err error) {
	if trainDS, err = dataset.Open(gen.Root, dataset.Options{Split: "train"}); err != nil {
		return
	}
	if testDS, err = dataset.Open(gen.Root, dataset.Options{Split: "test"}); err != nil {
		return
	}
	classes, err := eval.ClassesFromDataset(trainDS)
	if err != nil {
		return
	}
	if truth, err = eval.ReadLabelsFile(gen.Solution); err != nil {
		return
	}
	opt = eval.Options{Classes: classes, ClassesName: gen.TrainMetadata, TailMax: DemoTailMax, MediumMax: DemoMediumMax}
	return
}

// scoreFiles evaluates the submission and top-k that run wrote in dir with the demo's groups,
// writing the report to dir/report.
func scoreFiles(dir string, truth *eval.Labels, opt eval.Options) (Method, error) {
	pred, err := eval.ReadLabelsFile(filepath.Join(dir, "submission.csv"))
	if err != nil {
		return Method{}, err
	}
	if opt.TopK, err = eval.ReadTopKFile(filepath.Join(dir, "topk.csv")); err != nil {
		return Method{}, err
	}
	rep, err := eval.Evaluate(truth, pred, opt)
	if err != nil {
		return Method{}, err
	}
	if err := rep.WriteDir(filepath.Join(dir, "report")); err != nil {
		return Method{}, err
	}
	return Method{Report: rep, Dir: dir}, nil
}

// scoreMethod writes a method's submission and top-k into dir and evaluates them against truth.
func scoreMethod(dir string, truth *eval.Labels, r *predict.Result, opt eval.Options) (Method, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Method{}, err
	}
	if err := r.WriteSubmission(filepath.Join(dir, "submission.csv")); err != nil {
		return Method{}, err
	}
	if err := r.WriteTopK(filepath.Join(dir, "topk.csv")); err != nil {
		return Method{}, err
	}
	return scoreFiles(dir, truth, opt)
}

// randomGuess predicts uniformly random species (with 5 random ranks for top-5).
func randomGuess(testDS, trainDS *dataset.Dataset, seed uint64) *predict.Result {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	n := len(testDS.Samples)
	res := &predict.Result{IDs: make([]int64, n), Pred: make([]int64, n), Ranked: make([][]eval.Ranked, n)}
	for i, s := range testDS.Samples {
		res.IDs[i] = s.ID
		perm := r.Perm(len(trainDS.Classes))[:min(5, len(trainDS.Classes))]
		for j, c := range perm {
			res.Ranked[i] = append(res.Ranked[i], eval.Ranked{Class: trainDS.Classes[c].ID, Distance: float32(j)})
		}
		res.Pred[i] = res.Ranked[i][0].Class
	}
	return res
}
