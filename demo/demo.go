// Package demo runs protoherb's whole pipeline on a generated herbarium, with no downloads: synth →
// pretrain → train → prototypes → predict → evaluate, and writes a short report comparing the trained
// model with two baselines computed in the same run (a random guess, and nearest prototypes on the
// pretrained backbone before episodic training).
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
	"protoherb/imageio"
	"protoherb/infer"
	"protoherb/predict"
	"protoherb/progress"
	"protoherb/proto"
	"protoherb/synth"
	"protoherb/train"
)

// Config sizes a demo. Defaults (zero values) make one that runs in a few minutes on 2 cores.
type Config struct {
	Out                       string // output folder (required)
	Species, Genera, Families int
	SheetSize                 int // long side of the generated sheets, px
	ImageSize                 int // model input, px
	PretrainSteps, TrainSteps int
	TopClasses                int // pretraining classes (the most populated)
	Way, Shot, Query          int // training episodes
	Threads                   int
	Seed                      uint64
	Quiet                     bool      // no progress bars
	Log                       io.Writer // where stage headers and the summary go (nil: discard)
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
	d(&c.PretrainSteps, 600)
	d(&c.TrainSteps, 600)
	d(&c.TopClasses, 60)
	d(&c.Way, 20)
	d(&c.Shot, 2)
	d(&c.Query, 2)
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
	Data        string // the generated herbarium (nybg2020 layout)
	PretrainRun string
	TrainRun    string
	Prototypes  string // the trained model's robust prototypes (for serve)
	Report      string // report.md
	Methods     []Method
	Elapsed     time.Duration
}

// Run executes the demo. Its caller sets libtorch's threads (cfg.Threads) and seeds it (cfg.Seed).
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
	res := &Result{Data: filepath.Join(cfg.Out, "data"), PretrainRun: filepath.Join(cfg.Out, "runs", "pretrain"),
		TrainRun: filepath.Join(cfg.Out, "runs", "train")}
	stage := func(n int, what string) { fmt.Fprintf(cfg.Log, "\n== %d/6 %s\n", n, what) }

	stage(1, "synth: a generated herbarium in the Herbarium 2020 layout")
	sc := synth.DemoConfig()
	sc.Out, sc.Species, sc.Genera, sc.Families, sc.Size, sc.Seed = res.Data, cfg.Species, cfg.Genera, cfg.Families, cfg.SheetSize, cfg.Seed
	sc.Progress = bar
	gen, err := synth.Generate(ctx, sc)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "%d species, %d train and %d test images in %s\n", len(gen.Categories), gen.TrainImages, gen.TestImages, gen.Root)

	if err := trainRuns(ctx, cfg, res, gen.Root, bar, stage); err != nil {
		return nil, err
	}

	trainDS, testDS, truth, opt, err := scoring(gen)
	if err != nil {
		return nil, err
	}
	score := func(name, note string, r *predict.Result) error {
		m, err := scoreMethod(filepath.Join(cfg.Out, name), truth, r, opt)
		if err != nil {
			return err
		}
		m.Name, m.Note = name, note
		res.Methods = append(res.Methods, m)
		fmt.Fprintf(cfg.Log, "%-22s macro-F1 %.3f  accuracy %.3f  top-5 %.3f\n", name, m.Report.MacroF1, m.Report.Accuracy, m.Report.TopKAccuracy)
		return nil
	}

	stage(4, "baseline: a random species for every test image")
	if err := score("random", "a uniformly random species per test image", randomGuess(testDS, trainDS, cfg.Seed)); err != nil {
		return nil, err
	}

	stage(5, "prototypes and predictions: embed every image once, exact top-k over all species")
	for _, m := range prototypeMethods(res) {
		// Each method's prototype file records its build; predict (and serve) apply it.
		protos := filepath.Join(cfg.Out, m.name, "prototypes.safetensors")
		if m.name == "trained-robust" {
			protos = filepath.Join(cfg.Out, "prototypes.safetensors")
			res.Prototypes = protos
		}
		r, err := prototypesAndPredict(ctx, m.run, trainDS, testDS, m.normalize, m.build, protos, bar)
		if err != nil {
			return nil, fmt.Errorf("demo %s: %w", m.name, err)
		}
		if err := score(m.name, m.note, r); err != nil {
			return nil, err
		}
	}

	stage(6, "report")
	res.Elapsed = time.Since(t0)
	res.Report = filepath.Join(cfg.Out, "report.md")
	if err := writeReport(res, cfg, gen); err != nil {
		return nil, err
	}
	return res, nil
}

// prototypeMethod is one way of making prototypes that the demo scores.
type prototypeMethod struct {
	run, name, note string
	normalize       bool
	build           proto.Build
}

// prototypeMethods are the pretrained and trained models' plain prototypes, and the trained
// model's robust ones.
func prototypeMethods(res *Result) []prototypeMethod {
	robust := proto.Build{Center: true, Normalize: true, ShrinkGenus: 1, ShrinkFamily: 0.5}
	return []prototypeMethod{
		{res.PretrainRun, "pretrained", "nearest class mean on the pretrained backbone (no episodic training)", false, proto.Build{}},
		{res.TrainRun, "trained", "nearest class mean after episodic training (plain prototypes)", false, proto.Build{}},
		{res.TrainRun, "trained-robust", "after episodic training, robust prototypes: normalised embeddings, centred, shrunk toward genus (λ=1) and family (μ=0.5), normalised", true, robust},
	}
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

// trainRuns pretrains a classifier on the most populated species, then trains episodically from it
// (fresh runs each time), on the generated herbarium at data.
func trainRuns(ctx context.Context, cfg Config, res *Result, data string, bar progress.Options, stage func(int, string)) error {
	// Fresh runs each time: a demo is a demonstration, not a run to resume.
	for _, d := range []string{res.PretrainRun, res.TrainRun} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	common := func(c *train.Config) {
		c.Data, c.ImageSize, c.Channels, c.Threads, c.Seed = data, cfg.ImageSize, 3, cfg.Threads, cfg.Seed
		c.Backbone, c.ChannelsLast, c.Augment = "conv4", true, true
		c.TestWay, c.TestShot, c.TestQuery, c.EvalEpisodes = 5, 1, 3, 50
		c.KeepLast = 1
	}

	stage(2, "pretrain: softmax classifier on the most populated species")
	pc := train.Defaults(train.ModePretrain)
	common(&pc)
	pc.RunDir, pc.TopClasses, pc.Steps, pc.BatchSize = res.PretrainRun, cfg.TopClasses, cfg.PretrainSteps, 64
	pc.LR, pc.Warmup, pc.EvalEvery, pc.SaveEvery = 0.05, cfg.PretrainSteps/20, cfg.PretrainSteps/2, cfg.PretrainSteps
	pr, err := train.Run(ctx, pc, train.Options{Bar: bar})
	if err != nil {
		return fmt.Errorf("demo pretrain: %w", err)
	}
	if pr.Interrupted {
		return context.Canceled
	}
	fmt.Fprintf(cfg.Log, "pretrained %d steps, %.0f images/s, validation accuracy %.3f\n", pr.Step, pr.ImagesPerS, pr.BestAcc)

	stage(3, "train: episodic prototypical-network training over the long tail")
	tc := train.Defaults(train.ModeEpisodic)
	common(&tc)
	tc.RunDir, tc.Init, tc.Steps = res.TrainRun, res.PretrainRun, cfg.TrainSteps
	tc.Way, tc.Shot, tc.Query = cfg.Way, cfg.Shot, cfg.Query
	tc.LR, tc.Schedule, tc.MinLR = 5e-4, "cosine", 0
	tc.EvalEvery, tc.SaveEvery, tc.ValFrac = cfg.TrainSteps/3, cfg.TrainSteps, 0.15
	tr, err := train.Run(ctx, tc, train.Options{Bar: bar})
	if err != nil {
		return fmt.Errorf("demo train: %w", err)
	}
	if tr.Interrupted {
		return context.Canceled
	}
	fmt.Fprintf(cfg.Log, "trained %d episodes, %.0f images/s, best 5-way 1-shot validation accuracy %.3f\n", tr.Step, tr.ImagesPerS, tr.BestAcc)
	return nil
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
	pred := &eval.Labels{Name: filepath.Join(dir, "submission.csv"), IDs: r.IDs, Class: r.Pred}
	var err error
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

// prototypesAndPredict embeds the training set with the model of a run, writes the per-species sums
// with build b recorded to protos, embeds the test set once and searches it against all the
// prototypes built from that file.
func prototypesAndPredict(ctx context.Context, run string, trainDS, testDS *dataset.Dataset, normalize bool, b proto.Build,
	protos string, bar progress.Options) (*predict.Result, error) {
	emb, err := infer.LoadModel(run, infer.ModelSpec{ChannelsLast: true, Chunk: 32})
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	fp, err := infer.Fingerprint(run)
	if err != nil {
		return nil, err
	}
	lo := imageio.LoaderOptions{BatchSize: 64}
	tr, err := infer.EmbedDataset(ctx, emb, trainDS, infer.DatasetOptions{Fingerprint: fp, Loader: lo, Bar: bar})
	if err != nil {
		return nil, err
	}
	store, err := proto.New(tr.Dim, fp, trainDS.Classes, proto.Options{NormalizeEmbeddings: normalize})
	if err != nil {
		return nil, err
	}
	if err := store.Accumulate(tr.Vectors, tr.Labels, tr.IDs); err != nil {
		return nil, err
	}
	store.SetDefaultBuild(b)
	if err := os.MkdirAll(filepath.Dir(protos), 0o755); err != nil {
		return nil, err
	}
	if err := store.Replace(protos); err != nil {
		return nil, err
	}
	x, err := proto.Open(protos, proto.OpenOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer x.Close()
	te, err := infer.EmbedDataset(ctx, emb, testDS, infer.DatasetOptions{Fingerprint: fp, Loader: lo, Bar: bar})
	if err != nil {
		return nil, err
	}
	return predict.Run(ctx, x, te, 5)
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
