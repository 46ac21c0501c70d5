package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"protoherb/checkpoint"
	"protoherb/dataset"
	"protoherb/metrics"
	"protoherb/nn"
	"protoherb/plot"
	"protoherb/progress"
	"protoherb/torch"
)

// Options are what a run needs besides its Config.
type Options struct {
	// Resume continues the run in Config.RunDir from its newest good checkpoint.
	Resume bool
	// Group, when set, makes this process one rank of a data-parallel run (see distRun); every rank
	// calls Run with the same config.
	Group *torch.Group
	// Bar configures the progress bars (Quiet for tests).
	Bar progress.Options
	// AfterStep, when set, is called after every completed step with the step number and its loss
	// (tests use it to interrupt a run at a given point).
	AfterStep func(step int, loss float64)
	// beforeStep is a test hook called before a step starts (with the number of the step it takes).
	beforeStep func(step int)
	// evalNorm runs the model in eval mode during steps (batch norm on running statistics): the
	// distributed equivalence tests need a model whose step does not depend on the batch split.
	evalNorm bool
	// loadAhead, when set, decides instead of loadsAhead whether the next batch loads in the
	// background (a test hook).
	loadAhead *bool
}

// Result summarises a run that ended (finished, or interrupted and checkpointed).
type Result struct {
	Step        int
	Interrupted bool
	Checkpoint  string  // the last checkpoint written or resumed from
	Loss        float64 // the last step's loss
	Best        string  // the best checkpoint ("" without validation)
	BestAcc     float64
	ImagesPerS  float64 // training throughput (images in steps / time in steps)
	// SecPerStep is the mean step time after the first step (its warm-up: thread pools, first
	// allocations, the loader's start) when there were several, for planning from a few steps.
	SecPerStep float64
	// DataShare is the share of the step time spent sampling and loading images.
	DataShare float64
	Losses    []float64 // the loss of every step this call ran, in order
	// StepSeconds is the time of every step this call ran, in order.
	StepSeconds []float64
}

// stepResult is what one training step reports.
type stepResult struct {
	loss, acc float64
	images    int
	data      time.Duration // of which spent sampling and loading images
	took      time.Duration // the whole step, loading included
	badImages int           // images of the batch that could not be loaded and were replaced
}

// task is one training stage: how a step is taken and how validation is measured.
type task interface {
	// plan draws from r the sample positions and augmentation seed of step (0-based); it is the
	// only draw a step makes from the run's generator.
	plan(r *rand.Rand, step int) (idx []int, seed uint64)
	// source serves the training images.
	source() Images
	// step runs forward, backward and the optimizer step on the images xs of the samples idx. It
	// returns errNonFinite (wrapped, with the loss) before touching the weights when the loss is
	// NaN or infinite.
	step(s *torch.Scope, idx []int, xs []float32) (stepResult, error)
	// validate returns validation values (acc, acc_ci95, ...) and the accuracy the best slot ranks
	// by; ok is false when the task has no validation data.
	validate(ctx context.Context) (vals map[string]float64, acc float64, ok bool, err error)
	// unit is the number of consecutive samples of a plan that a rank takes whole (one image, one
	// episode) when a distributed step is split across ranks.
	unit() int
	// classes is the JSON class list stored in checkpoints.
	classes() json.RawMessage
	epoch(step int) int
	close()
}

// runState is a run in progress: the model and everything a checkpoint restores.
type runState struct {
	cfg    Config
	dev    torch.Device
	model  *nn.Model
	metric *Metric
	opt    *torch.Optimizer
	sched  LRSchedule
	pcg    *rand.PCG
	rng    *rand.Rand
	step   int
	// resumedWorld is the world size the resumed checkpoint was written with (0: fresh or unknown).
	resumedWorld int
	task         task
	// trainMode is the mode the model runs in during steps (false only in tests: batch norm then
	// uses its running statistics, so that ranks compute exactly what one process would).
	trainMode bool
	// dist is the distributed side of the run (nil: one process).
	dist *distRun
	// fetch draws and loads the steps' batches (one step ahead where that pays: loadsAhead).
	fetch *prefetcher
}

// weights lists what a checkpoint stores: the model state and the metric's temperature.
func (rs *runState) weights() []nn.Param { return append(rs.model.State(), rs.metric.Params()...) }

// trainable lists what the optimizer updates.
func (rs *runState) trainable() []*torch.Tensor {
	return append(nn.Tensors(rs.model.Parameters()), nn.Tensors(rs.metric.Params())...)
}

func (rs *runState) close() {
	if rs.dist != nil {
		rs.dist.close()
	}
	if rs.fetch != nil {
		rs.fetch.stop()
	}
	if rs.task != nil {
		rs.task.close()
	}
	if rs.opt != nil {
		rs.opt.Close()
	}
	rs.metric.Close()
	if rs.model != nil {
		rs.model.Close()
	}
}

// Run runs a pretrain or train stage (cfg.Mode) until cfg.Steps, a cancelled ctx (it then saves a
// checkpoint and returns Interrupted without an error), or an error. A NaN or infinite loss stops
// the run with an error naming the step; the last good checkpoint stays the newest.
//
// Run leaves libtorch's process settings to its caller: the command sets the threads
// (cfg.Threads) and seeds the generator (cfg.Seed) once, before the first run.
func Run(ctx context.Context, cfg Config, opt Options) (Result, error) {
	rs, res, err := start(ctx, cfg, opt)
	if err != nil {
		return Result{}, err
	}
	defer rs.close()
	l, err := newLoop(rs, opt, res)
	if err != nil {
		return Result{}, err
	}
	defer l.close()
	return l.run(ctx)
}

// start checks the config and builds the run state: data, model, optimizer, then the resumed or
// initial weights. The result holds what resuming found (checkpoint, best slot).
func start(ctx context.Context, cfg Config, opt Options) (*runState, Result, error) {
	if opt.Resume && cfg.RunDir == "" {
		return nil, Result{}, fmt.Errorf("resume: no run directory")
	}
	cfg.resolveImage()
	if err := cfg.Validate(); err != nil {
		return nil, Result{}, err
	}
	dev, err := torch.ParseDevice(cfg.Device)
	if err != nil {
		return nil, Result{}, err
	}
	lead := opt.Group == nil || opt.Group.Rank() == 0
	if !opt.Resume && lead {
		if steps, _ := checkpoint.Steps(cfg.RunDir); len(steps) > 0 {
			return nil, Result{}, fmt.Errorf("%s already holds checkpoints (newest step %d): continue it with --resume, or choose another --run-dir", cfg.RunDir, steps[0])
		}
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, Result{}, fmt.Errorf("run dir: %w", err)
	}
	if lead {
		if cfg.Backbone, err = ownScript(cfg.Backbone, cfg.RunDir, opt.Resume); err != nil {
			return nil, Result{}, err
		}
	}
	pcg := rand.NewPCG(cfg.Seed, 0x7261696e)
	rs := &runState{cfg: cfg, dev: dev, pcg: pcg, rng: rand.New(pcg), trainMode: !opt.evalNorm, dist: newDistRun(opt.Group)}
	res, err := rs.build(ctx, opt)
	if err == nil && rs.dist != nil {
		err = rs.sync(rs.resumedWorld)
	}
	if err != nil {
		rs.close()
		return nil, Result{}, err
	}
	return rs, res, nil
}

// build makes the task, the optimizer and the starting weights of a run state.
func (rs *runState) build(ctx context.Context, opt Options) (Result, error) {
	var err error
	switch rs.cfg.Mode {
	case ModePretrain:
		rs.task, err = newPretrain(ctx, rs, opt.Bar)
	default:
		rs.task, err = newEpisodic(ctx, rs, opt.Bar)
	}
	if err != nil {
		return Result{}, err
	}
	ahead := loadsAhead(rs.task.source(), rs.dev)
	if opt.loadAhead != nil {
		ahead = *opt.loadAhead
	}
	plan := rs.task.plan
	if rs.dist != nil {
		if err := rs.dist.check(&rs.cfg); err != nil {
			return Result{}, err
		}
		plan = rs.dist.localPlan(plan, rs.task.unit())
	}
	rs.fetch = newPrefetcher(rs, rs.task.source(), plan, ahead)
	if rs.metric == nil {
		rs.metric = &Metric{Distance: "euclidean"}
	}
	if err := rs.newOptimizer(); err != nil {
		return Result{}, err
	}
	res := Result{BestAcc: math.Inf(-1)}
	if !rs.lead() {
		return res, nil // rank 0 reads the starting state and sends it (sync)
	}
	if opt.Resume {
		if res, err = rs.resume(); err != nil {
			return Result{}, err
		}
	} else if rs.cfg.Init != "" {
		if err := loadInit(rs.model, rs.cfg.Init); err != nil {
			return Result{}, err
		}
	}
	return res, WriteConfig(ConfigPath(rs.cfg.RunDir), rs.cfg)
}

// resume restores the newest checkpoint and rewinds the metrics to it; the result names the
// checkpoint and the best slot with its accuracy.
func (rs *runState) resume() (Result, error) {
	path, err := rs.restore()
	if err != nil {
		return Result{}, err
	}
	if rs.step >= rs.cfg.Steps {
		return Result{}, fmt.Errorf("resume: %s is at step %d, which already reaches --steps %d; give a larger --steps to continue", path, rs.step, rs.cfg.Steps)
	}
	mp := rs.metricsPath()
	if err := metrics.Rewind(mp, int64(rs.step)); err != nil {
		return Result{}, fmt.Errorf("resume: %w", err)
	}
	res := Result{Checkpoint: path}
	if res.BestAcc, res.Best, err = previousBest(mp, rs.cfg.RunDir); err != nil {
		return Result{}, fmt.Errorf("resume: %w", err)
	}
	slog.Info("train: resuming", "checkpoint", path, "step", rs.step)
	return res, nil
}

func (rs *runState) metricsPath() string { return filepath.Join(rs.cfg.RunDir, "metrics.jsonl") }

// loop is the training loop of a run: steps, validation and checkpoints, with their bookkeeping.
type loop struct {
	rs    *runState
	opt   Options
	mw    *metrics.Writer
	bar   *progress.Bar
	scope *torch.Scope
	res   Result
	// lastSaved is the step of the newest checkpoint (-1: none in this run).
	lastSaved int
	// Throughput of the steps this call ran.
	trainTime, dataTime time.Duration
	firstStep           time.Duration // the first step's time (warm-up)
	trainImages         int
}

func newLoop(rs *runState, opt Options, res Result) (*loop, error) {
	l := &loop{rs: rs, opt: opt, res: res, lastSaved: rs.step, scope: torch.NewScope()}
	if rs.lead() {
		mw, err := metrics.Open(rs.metricsPath(), metrics.WriterOptions{FlushEvery: 5 * time.Second})
		if err != nil {
			l.scope.Close()
			return nil, err
		}
		l.mw = mw
	} else {
		opt.Bar.Quiet = true // one progress bar per job
	}
	if !opt.Resume {
		l.lastSaved = -1
	}
	l.bar = progress.New(int64(rs.cfg.Steps-rs.step), rs.cfg.Mode, withUnit(opt.Bar, "step"))
	return l, nil
}

func (l *loop) close() {
	l.bar.Finish()
	l.scope.Close()
	if l.mw != nil {
		l.mw.Close()
	}
}

// write records a metrics line (rank 0 alone writes).
func (l *loop) write(r metrics.Record) error {
	if l.mw == nil {
		return nil
	}
	return l.mw.Write(r)
}

func (l *loop) flush() error {
	if l.mw == nil {
		return nil
	}
	return l.mw.Flush()
}

// run takes steps until the last one or an interruption, validating and checkpointing on schedule.
func (l *loop) run(ctx context.Context) (Result, error) {
	rs, cfg := l.rs, &l.rs.cfg
	for rs.step < cfg.Steps && !l.res.Interrupted {
		sr, lr, err := l.step(ctx)
		if err != nil || l.res.Interrupted {
			if err != nil {
				return l.res, err
			}
			break
		}
		if err := l.record(sr, lr); err != nil {
			return l.res, err
		}
		if cfg.EvalEvery > 0 && (rs.step%cfg.EvalEvery == 0 || rs.step == cfg.Steps) && rs.lead() {
			if err := l.validate(ctx, sr.loss); err != nil {
				return l.res, err
			}
			if l.res.Interrupted {
				break
			}
		}
		if (cfg.SaveEvery > 0 && rs.step%cfg.SaveEvery == 0) || rs.step == cfg.Steps {
			if err := l.checkpoint(); err != nil {
				return l.res, err
			}
		}
	}
	if l.res.Interrupted && l.lastSaved != rs.step {
		slog.Info("train: interrupted; saving a checkpoint", "step", rs.step)
		if err := l.checkpoint(); err != nil {
			return l.res, err
		}
	}
	return l.finish()
}

// step takes one training step. An interruption (before or while loading the step's images)
// applies nothing, sets res.Interrupted and returns no error.
func (l *loop) step(ctx context.Context) (stepResult, float64, error) {
	rs := l.rs
	stop := ctx.Err() != nil
	if rs.dist != nil {
		var err error
		if stop, err = rs.dist.vote(stop); err != nil {
			return stepResult{}, 0, err
		}
		// The ranks stop together at a vote: loading is never cut short on one rank alone.
		ctx = context.WithoutCancel(ctx)
	}
	if stop {
		l.res.Interrupted = true
		return stepResult{}, 0, nil
	}
	lr := rs.sched(rs.step)
	if err := rs.opt.SetLR(lr); err != nil {
		return stepResult{}, lr, err
	}
	if l.opt.beforeStep != nil {
		l.opt.beforeStep(rs.step + 1)
	}
	t0 := time.Now()
	b, wait, err := rs.fetch.next(ctx, rs.step, rs.step+1 >= rs.cfg.Steps)
	if err == nil && ctx.Err() != nil {
		// Interrupted while waiting for the images: apply nothing and undo this step's draws.
		l.res.Interrupted = true
		return stepResult{}, lr, rs.fetch.rewind(b)
	}
	if err != nil {
		if ctx.Err() != nil {
			// next has already undone this step's draws.
			l.res.Interrupted = true
			return stepResult{}, lr, nil
		}
		return stepResult{}, lr, fmt.Errorf("step %d: loading images: %w", rs.step+1, err)
	}
	sr, err := rs.task.step(l.scope, b.idx, b.xs)
	sr.data += wait
	sr.badImages = b.replaced
	l.scope.Reset()
	if err != nil {
		return sr, lr, l.stepFailed(sr, lr, err)
	}
	sr.took = time.Since(t0)
	rs.step++
	return sr, lr, nil
}

// stepFailed turns a failed step into the run's error; a non-finite loss is recorded first, and the
// error names the last good checkpoint.
func (l *loop) stepFailed(sr stepResult, lr float64, err error) error {
	rs := l.rs
	if !errors.Is(err, errNonFinite) {
		return fmt.Errorf("step %d: %w", rs.step+1, err)
	}
	_ = l.write(metrics.Record{Step: int64(rs.step + 1), Phase: "train", Values: map[string]float64{"loss": sr.loss, "lr": lr}})
	_ = l.flush()
	last := l.res.Checkpoint
	if steps, _ := checkpoint.Steps(rs.cfg.RunDir); len(steps) > 0 {
		last = filepath.Join(rs.cfg.RunDir, checkpoint.Name(steps[0]))
	}
	if last == "" {
		last = "none saved yet"
	}
	return fmt.Errorf("step %d: the loss is %v: stopping (lower --lr, or check the data); last good checkpoint: %s", rs.step+1, sr.loss, last)
}

// record books a completed step: throughput, metrics, progress bar and the AfterStep hook.
func (l *loop) record(sr stepResult, lr float64) error {
	rs := l.rs
	if len(l.res.Losses) == 0 {
		l.firstStep = sr.took
	}
	l.trainTime += sr.took
	l.trainImages += sr.images
	l.dataTime += sr.data
	l.res.Loss = sr.loss
	l.res.Losses = append(l.res.Losses, sr.loss)
	l.res.StepSeconds = append(l.res.StepSeconds, sr.took.Seconds())
	ips := float64(l.trainImages) / l.trainTime.Seconds()
	vals := map[string]float64{"loss": sr.loss, "acc": sr.acc, "lr": lr, "images_per_s": float64(sr.images) / sr.took.Seconds(),
		"step_s": sr.took.Seconds(), "data_s": sr.data.Seconds()}
	if sr.badImages > 0 {
		vals["bad_images"] = float64(sr.badImages)
	}
	if err := l.write(metrics.Record{Step: int64(rs.step), Phase: "train", Values: vals}); err != nil {
		return err
	}
	l.bar.Describe(fmt.Sprintf("%s step %d/%d loss %.4f acc %.3f %.0f img/s", rs.cfg.Mode, rs.step, rs.cfg.Steps, sr.loss, sr.acc, ips))
	l.bar.Add(1)
	if l.opt.AfterStep != nil {
		l.opt.AfterStep(rs.step, sr.loss)
	}
	return nil
}

// validate measures the validation accuracy, records it, and saves the best slot when it improves.
// An interruption during validation sets res.Interrupted and returns no error.
func (l *loop) validate(ctx context.Context, loss float64) error {
	rs := l.rs
	vals, acc, ok, err := rs.task.validate(ctx)
	if err != nil {
		if ctx.Err() != nil {
			l.res.Interrupted = true
			return nil
		}
		return fmt.Errorf("validation at step %d: %w", rs.step, err)
	}
	if !ok {
		return nil
	}
	if err := l.write(metrics.Record{Step: int64(rs.step), Phase: "val", Values: vals}); err != nil {
		return err
	}
	args := []any{"step", rs.step, "acc", fmt.Sprintf("%.4f", acc)}
	if ci, ok := vals["acc_ci95"]; ok {
		args = append(args, "ci95", fmt.Sprintf("%.4f", ci))
	}
	slog.Info("train: validation", args...)
	if acc <= l.res.BestAcc {
		return nil
	}
	l.res.BestAcc = acc
	p, err := rs.save(loss, vals, true)
	if err != nil {
		return err
	}
	l.res.Best = p
	return nil
}

// checkpoint flushes the metrics, saves a checkpoint and redraws the curves (rank 0 alone writes;
// the others note the step).
func (l *loop) checkpoint() error {
	if !l.rs.lead() {
		l.lastSaved = l.rs.step
		return nil
	}
	if err := l.mw.Flush(); err != nil {
		return err
	}
	p, err := l.rs.save(l.res.Loss, nil, false)
	if err != nil {
		return err
	}
	l.res.Checkpoint, l.lastSaved = p, l.rs.step
	dir := l.rs.cfg.RunDir
	if err := plot.Curves(l.rs.metricsPath(), filepath.Join(dir, "curves.png")); err != nil {
		slog.Warn("train: cannot draw the curves", "err", err)
	}
	return nil
}

// finish completes the result: the step reached, the best accuracy and the throughput.
func (l *loop) finish() (Result, error) {
	res := l.res
	res.Step = l.rs.step
	if math.IsInf(res.BestAcc, -1) {
		res.BestAcc = 0
	}
	if l.trainTime > 0 && len(res.Losses) > 0 {
		res.ImagesPerS = float64(l.trainImages) / l.trainTime.Seconds()
		res.SecPerStep = l.trainTime.Seconds() / float64(len(res.Losses))
		if n := len(res.Losses); n > 1 {
			res.SecPerStep = (l.trainTime - l.firstStep).Seconds() / float64(n-1)
		}
		res.DataShare = l.dataTime.Seconds() / l.trainTime.Seconds()
	}
	return res, l.flush()
}

// newOptimizer builds the optimizer and the learning-rate schedule from the config.
func (rs *runState) newOptimizer() error {
	c := rs.cfg
	var err error
	ps := rs.trainable()
	switch c.Optimizer {
	case "sgd":
		rs.opt, err = torch.NewSGD(ps, torch.SGDOptions{LR: c.LR, Momentum: c.Momentum, WeightDecay: c.WeightDecay, Nesterov: c.Momentum > 0})
	case "adamw":
		rs.opt, err = torch.NewAdamW(ps, torch.AdamOptions{LR: c.LR, WeightDecay: c.WeightDecay})
	default:
		rs.opt, err = torch.NewAdam(ps, torch.AdamOptions{LR: c.LR, WeightDecay: c.WeightDecay})
	}
	if err != nil {
		return fmt.Errorf("optimizer: %w", err)
	}
	switch c.Schedule {
	case "cosine":
		rs.sched = CosineLR(c.LR, c.MinLR, c.Warmup, c.Steps)
	case "step":
		step := StepLR(c.LR, c.LRGamma, c.LRStep)
		rs.sched = withWarmup(step, c.LR, c.Warmup)
	default:
		rs.sched = withWarmup(func(int) float64 { return c.LR }, c.LR, c.Warmup)
	}
	return nil
}

// save writes a checkpoint of the current state (into the best slot when best).
func (rs *runState) save(loss float64, vals map[string]float64, best bool) (string, error) {
	optState, err := rs.opt.State()
	if err != nil {
		return "", fmt.Errorf("checkpoint: optimizer state: %w", err)
	}
	trng, err := torch.RNGState()
	if err != nil {
		return "", fmt.Errorf("checkpoint: torch generator: %w", err)
	}
	grng, err := rs.fetch.rngState()
	if err != nil {
		return "", fmt.Errorf("checkpoint: Go generator: %w", err)
	}
	m := map[string]float64{"loss": loss, "world_size": float64(rs.worldSize())}
	for k, v := range vals {
		m["val_"+k] = v
	}
	ck := &checkpoint.Checkpoint{Step: rs.step, Epoch: rs.task.epoch(rs.step), Weights: rs.weights(), OptimizerState: optState,
		TorchRNG: trng, GoRNG: grng, Config: rs.cfg.json(), Classes: rs.task.classes(), Metrics: m}
	if best {
		return checkpoint.SaveBest(rs.cfg.RunDir, ck)
	}
	return checkpoint.Save(rs.cfg.RunDir, ck, rs.cfg.KeepLast)
}

// restore loads the newest good checkpoint of the run directory into the run state.
func (rs *runState) restore() (string, error) {
	ck, path, err := checkpoint.LoadLatest(rs.cfg.RunDir)
	if err != nil {
		return "", fmt.Errorf("resume: %w", err)
	}
	defer ck.Free()
	if _, err := nn.LoadInto(rs.weights(), ck.WeightMap(), true); err != nil {
		return "", fmt.Errorf("resume %s: %w", path, err)
	}
	if len(ck.OptimizerState) > 0 {
		if err := rs.opt.LoadState(ck.OptimizerState); err != nil {
			return "", fmt.Errorf("resume %s: optimizer: %w", path, err)
		}
	}
	if len(ck.TorchRNG) > 0 {
		if err := torch.SetRNGState(ck.TorchRNG); err != nil {
			return "", fmt.Errorf("resume %s: torch generator: %w", path, err)
		}
	}
	if err := rs.pcg.UnmarshalBinary(ck.GoRNG); err != nil {
		return "", fmt.Errorf("resume %s: Go generator: %w", path, err)
	}
	rs.step = ck.Step
	rs.resumedWorld = int(ck.Metrics["world_size"])
	if rs.resumedWorld == 0 {
		rs.resumedWorld = 1
	}
	return path, nil
}

// previousBest returns the best validation accuracy recorded so far and the best slot's path
// (-Inf and "" without a best slot). The accuracy comes from the validation records of metrics.jsonl,
// else (file missing, or no record) from the best checkpoint's own metrics; any other read error is
// returned, since guessing would let a worse checkpoint replace the best one.
func previousBest(metricsPath, runDir string) (float64, string, error) {
	p := filepath.Join(runDir, checkpoint.BestName)
	if _, err := os.Stat(p); err != nil {
		return math.Inf(-1), "", nil
	}
	best := math.Inf(-1)
	recs, err := metrics.ReadFile(metricsPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return best, "", fmt.Errorf("%s: the best accuracy so far is unknown: %w", metricsPath, err)
	}
	for _, r := range recs {
		if v, ok := r.Get("acc"); ok && r.Phase == "val" && v > best {
			best = v
		}
	}
	if !math.IsInf(best, -1) {
		return best, p, nil
	}
	ck, err := checkpoint.Load(p)
	if err != nil {
		return best, "", fmt.Errorf("the best accuracy so far is unknown: %w", err)
	}
	defer ck.Free()
	v, ok := ck.Metrics["val_acc"]
	if !ok {
		return best, "", fmt.Errorf("%s: no val_acc in its metrics and no validation record in %s: the best accuracy so far is unknown", p, metricsPath)
	}
	return v, p, nil
}

// imageOptions returns the image pipeline of a config (InMemory decided by the caller).
func (c *Config) imageOptions(workers int, bar progress.Options) ImageOptions {
	return ImageOptions{Size: c.ImageSize, Channels: c.Channels, Invert: c.Invert == "true", Augment: c.Augment, Fit: c.Fit, Squash: c.Squash,
		Workers: workers, Bar: bar, OnBad: c.onBad(), BadList: listPath(c.RunDir)}
}

// memoryBudget is the most RAM in-memory images take when in-memory is auto.
const memoryBudget = 4 << 30

// fitsInMemory reports whether the distinct images of subset fit memoryBudget as float32.
func fitsInMemory(d *dataset.Dataset, subset []int, o ImageOptions) bool {
	paths := map[string]bool{}
	if subset == nil {
		for _, s := range d.Samples {
			paths[s.Path] = true
		}
	} else {
		for _, i := range subset {
			paths[d.Samples[i].Path] = true
		}
	}
	return int64(len(paths))*int64(o.Channels*o.Size*o.Size)*4 <= memoryBudget
}

// newImagesFor builds the image source of a run's data, honouring in-memory auto|true|false.
func newImagesFor(ctx context.Context, c *Config, d *dataset.Dataset, subset []int, augment bool, bar progress.Options) (Images, error) {
	o := c.imageOptions(c.Workers, bar)
	o.Augment = augment
	switch c.InMemory {
	case "true":
		o.InMemory = true
	case "auto":
		o.InMemory = !augment && fitsInMemory(d, subset, o)
	}
	return NewImages(ctx, d, subset, o)
}

// input copies a batch of images into a tensor of the step's scope on the run's device.
func (rs *runState) input(s *torch.Scope, xs []float32, n int) *torch.Tensor {
	c, sz := rs.cfg.Channels, rs.cfg.ImageSize
	return torch.FromFloat32On(s, rs.dev, xs, int64(n), int64(c), int64(sz), int64(sz))
}

// backward checks the loss, then runs backward and the optimizer step.
func (rs *runState) backward(loss *torch.Tensor) (float64, error) {
	v, err := loss.Item()
	if err != nil {
		return 0, err
	}
	if rs.dist != nil {
		// Every rank sees the same mean loss, so a non-finite one stops them all.
		if v, err = rs.dist.meanLoss(v); err != nil {
			return v, err
		}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v, fmt.Errorf("%w: %v", errNonFinite, v)
	}
	if err := rs.opt.ZeroGrad(); err != nil {
		return v, err
	}
	overlapped := false
	if rs.dist != nil {
		if overlapped, err = rs.dist.prepare(rs.trainable(), loss); err != nil {
			return v, err
		}
	}
	if err := loss.Backward(); err != nil {
		if overlapped {
			return v, rs.dist.fault("averaging the gradients during backward", err)
		}
		return v, err
	}
	if rs.dist != nil && !overlapped {
		if err := rs.dist.averageGrads(rs.trainable()); err != nil {
			return v, err
		}
	}
	return v, rs.opt.Step()
}

// accuracy is the fraction of rows of logits whose argmax is the target.
func accuracy(logits *torch.Tensor, target []int64) (float64, error) {
	am := logits.Argmax(1, false)
	if am.Device() != torch.CPU {
		am = am.ToDevice(torch.CPU)
	}
	pred, err := am.Int64s()
	if err != nil {
		return 0, err
	}
	right := 0
	for i, p := range pred {
		if p == target[i] {
			right++
		}
	}
	return float64(right) / float64(max(len(target), 1)), nil
}
