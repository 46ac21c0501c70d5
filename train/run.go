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
	// Bar configures the progress bars (Quiet for tests).
	Bar progress.Options
	// AfterStep, when set, is called after every completed step with the step number and its loss
	// (tests use it to interrupt a run at a given point).
	AfterStep func(step int, loss float64)
	// beforeStep is a test hook called before a step starts (with the number of the step it takes).
	beforeStep func(step int)
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
	SecPerStep  float64
	// DataShare is the share of the step time spent sampling and loading images.
	DataShare float64
	Losses    []float64 // the loss of every step this call ran, in order
}

// stepResult is what one training step reports.
type stepResult struct {
	loss, acc float64
	images    int
	data      time.Duration // of which spent sampling and loading images
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
	sched  torch.LRSchedule
	pcg    *rand.PCG
	rng    *rand.Rand
	step   int
	task   task
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
func Run(ctx context.Context, cfg Config, opt Options) (Result, error) {
	if opt.Resume {
		if cfg.RunDir == "" {
			return Result{}, fmt.Errorf("resume: no run directory")
		}
	}
	cfg.resolveImage()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	dev, err := torch.ParseDevice(cfg.Device)
	if err != nil {
		return Result{}, err
	}
	if cfg.Threads > 0 {
		torch.SetNumThreads(cfg.Threads)
	}
	if err := torch.ManualSeed(cfg.Seed); err != nil {
		return Result{}, err
	}
	if !opt.Resume {
		if steps, _ := checkpoint.Steps(cfg.RunDir); len(steps) > 0 {
			return Result{}, fmt.Errorf("%s already holds checkpoints (newest step %d): continue it with --resume, or choose another --run-dir", cfg.RunDir, steps[0])
		}
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("run dir: %w", err)
	}
	pcg := rand.NewPCG(cfg.Seed, 0x7261696e)
	rs := &runState{cfg: cfg, dev: dev, pcg: pcg, rng: rand.New(pcg)}
	defer rs.close()
	switch cfg.Mode {
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
	rs.fetch = newPrefetcher(rs, rs.task.source(), rs.task.plan, ahead)
	if rs.metric == nil {
		rs.metric = &Metric{Distance: "euclidean"}
	}
	if err := rs.newOptimizer(); err != nil {
		return Result{}, err
	}
	metricsPath := filepath.Join(cfg.RunDir, "metrics.jsonl")
	res := Result{}
	bestAcc := math.Inf(-1)
	if opt.Resume {
		path, err := rs.restore()
		if err != nil {
			return Result{}, err
		}
		res.Checkpoint = path
		if rs.step >= cfg.Steps {
			return Result{}, fmt.Errorf("resume: %s is at step %d, which already reaches --steps %d; give a larger --steps to continue", path, rs.step, cfg.Steps)
		}
		if err := metrics.Rewind(metricsPath, int64(rs.step)); err != nil {
			return Result{}, fmt.Errorf("resume: %w", err)
		}
		bestAcc, res.Best = previousBest(metricsPath, cfg.RunDir)
		slog.Info("train: resuming", "checkpoint", path, "step", rs.step)
	} else if cfg.Init != "" {
		if err := loadInit(rs.model, cfg.Init); err != nil {
			return Result{}, err
		}
	}
	if err := WriteConfig(ConfigPath(cfg.RunDir), cfg); err != nil {
		return Result{}, err
	}
	mw, err := metrics.Open(metricsPath, metrics.WriterOptions{FlushEvery: 5 * time.Second})
	if err != nil {
		return Result{}, err
	}
	defer mw.Close()

	save := func() error {
		if err := mw.Flush(); err != nil {
			return err
		}
		p, err := rs.save(res.Loss, nil, false)
		if err != nil {
			return err
		}
		res.Checkpoint = p
		if err := plot.Curves(metricsPath, filepath.Join(cfg.RunDir, "curves.png")); err != nil {
			slog.Warn("train: cannot draw the curves", "err", err)
		}
		return nil
	}

	bar := progress.New(int64(cfg.Steps-rs.step), cfg.Mode, withUnit(opt.Bar, "step"))
	defer bar.Finish()
	scope := torch.NewScope()
	defer scope.Close()
	var trainTime time.Duration
	var trainImages int
	var dataTime time.Duration
	lastSaved := rs.step
	if !opt.Resume {
		lastSaved = -1
	}
	for rs.step < cfg.Steps {
		if ctx.Err() != nil {
			res.Interrupted = true
			break
		}
		lr := rs.sched(rs.step)
		if err := rs.opt.SetLR(lr); err != nil {
			return res, err
		}
		if opt.beforeStep != nil {
			opt.beforeStep(rs.step + 1)
		}
		t0 := time.Now()
		b, wait, err := rs.fetch.next(ctx, rs.step, rs.step+1 >= cfg.Steps)
		if err == nil && ctx.Err() != nil {
			// Interrupted while waiting for the images: apply nothing and undo this step's draws.
			err = rs.fetch.rewind(b)
			res.Interrupted = true
			if err != nil {
				return res, err
			}
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				// next has already undone this step's draws.
				res.Interrupted = true
				break
			}
			return res, fmt.Errorf("step %d: loading images: %w", rs.step+1, err)
		}
		sr, err := rs.task.step(scope, b.idx, b.xs)
		sr.data += wait
		scope.Reset()
		if err != nil {
			if errors.Is(err, errNonFinite) {
				_ = mw.Write(metrics.Record{Step: int64(rs.step + 1), Phase: "train", Values: map[string]float64{"loss": sr.loss, "lr": lr}})
				_ = mw.Flush()
				last := res.Checkpoint
				if steps, _ := checkpoint.Steps(cfg.RunDir); len(steps) > 0 {
					last = filepath.Join(cfg.RunDir, checkpoint.Name(steps[0]))
				}
				if last == "" {
					last = "none saved yet"
				}
				return res, fmt.Errorf("step %d: the loss is %v: stopping (lower --lr, or check the data); last good checkpoint: %s", rs.step+1, sr.loss, last)
			}
			return res, fmt.Errorf("step %d: %w", rs.step+1, err)
		}
		dt := time.Since(t0)
		trainTime += dt
		trainImages += sr.images
		dataTime += sr.data
		rs.step++
		res.Loss = sr.loss
		res.Losses = append(res.Losses, sr.loss)
		ips := float64(trainImages) / trainTime.Seconds()
		vals := map[string]float64{
			"loss": sr.loss, "acc": sr.acc, "lr": lr, "images_per_s": float64(sr.images) / dt.Seconds(), "step_s": dt.Seconds(), "data_s": sr.data.Seconds()}
		if b.replaced > 0 {
			vals["bad_images"] = float64(b.replaced)
		}
		if err := mw.Write(metrics.Record{Step: int64(rs.step), Phase: "train", Values: vals}); err != nil {
			return res, err
		}
		bar.Describe(fmt.Sprintf("%s step %d/%d loss %.4f acc %.3f %.0f img/s", cfg.Mode, rs.step, cfg.Steps, sr.loss, sr.acc, ips))
		bar.Add(1)
		if opt.AfterStep != nil {
			opt.AfterStep(rs.step, sr.loss)
		}
		if cfg.EvalEvery > 0 && (rs.step%cfg.EvalEvery == 0 || rs.step == cfg.Steps) {
			vals, acc, ok, err := rs.task.validate(ctx)
			if err != nil {
				if ctx.Err() != nil {
					res.Interrupted = true
					break
				}
				return res, fmt.Errorf("validation at step %d: %w", rs.step, err)
			}
			if ok {
				if err := mw.Write(metrics.Record{Step: int64(rs.step), Phase: "val", Values: vals}); err != nil {
					return res, err
				}
				args := []any{"step", rs.step, "acc", fmt.Sprintf("%.4f", acc)}
				if ci, ok := vals["acc_ci95"]; ok {
					args = append(args, "ci95", fmt.Sprintf("%.4f", ci))
				}
				slog.Info("train: validation", args...)
				if acc > bestAcc {
					bestAcc = acc
					p, err := rs.save(sr.loss, vals, true)
					if err != nil {
						return res, err
					}
					res.Best = p
				}
			}
		}
		if (cfg.SaveEvery > 0 && rs.step%cfg.SaveEvery == 0) || rs.step == cfg.Steps {
			if err := save(); err != nil {
				return res, err
			}
			lastSaved = rs.step
		}
	}
	if res.Interrupted && lastSaved != rs.step {
		slog.Info("train: interrupted; saving a checkpoint", "step", rs.step)
		if err := save(); err != nil {
			return res, err
		}
	}
	res.Step = rs.step
	if !math.IsInf(bestAcc, -1) {
		res.BestAcc = bestAcc
	}
	if trainTime > 0 && len(res.Losses) > 0 {
		res.ImagesPerS = float64(trainImages) / trainTime.Seconds()
		res.SecPerStep = trainTime.Seconds() / float64(len(res.Losses))
		res.DataShare = dataTime.Seconds() / trainTime.Seconds()
	}
	return res, mw.Flush()
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
		rs.sched = torch.CosineLR(c.LR, c.MinLR, c.Warmup, c.Steps)
	case "step":
		step := torch.StepLR(c.LR, c.LRGamma, c.LRStep)
		rs.sched = withWarmup(step, c.LR, c.Warmup)
	default:
		rs.sched = withWarmup(func(int) float64 { return c.LR }, c.LR, c.Warmup)
	}
	return nil
}

// withWarmup ramps linearly to base over the first warmup steps, then follows s.
func withWarmup(s torch.LRSchedule, base float64, warmup int) torch.LRSchedule {
	if warmup <= 0 {
		return s
	}
	return func(step int) float64 {
		if step < warmup {
			return base * float64(step+1) / float64(warmup)
		}
		return s(step)
	}
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
	m := map[string]float64{"loss": loss}
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
	return path, nil
}

// previousBest returns the best validation accuracy recorded so far and the best slot's path.
func previousBest(metricsPath, runDir string) (float64, string) {
	best := math.Inf(-1)
	recs, err := metrics.ReadFile(metricsPath)
	if err != nil {
		return best, ""
	}
	for _, r := range recs {
		if v, ok := r.Get("acc"); ok && r.Phase == "val" && v > best {
			best = v
		}
	}
	p := filepath.Join(runDir, checkpoint.BestName)
	if _, err := os.Stat(p); err != nil {
		return math.Inf(-1), ""
	}
	return best, p
}

// imageOptions returns the image pipeline of a config (InMemory decided by the caller).
func (c *Config) imageOptions(workers int, bar progress.Options) ImageOptions {
	return ImageOptions{Size: c.ImageSize, Channels: c.Channels, Invert: c.Invert == "true", Augment: c.Augment,
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

// toDevice copies a batch of images into a tensor of the step's scope on the run's device.
func (rs *runState) input(s *torch.Scope, xs []float32, n int) *torch.Tensor {
	c, sz := rs.cfg.Channels, rs.cfg.ImageSize
	x := torch.FromFloat32(s, xs, int64(n), int64(c), int64(sz), int64(sz))
	if rs.dev != torch.CPU {
		x = x.ToDevice(rs.dev)
	}
	return x
}

// backward checks the loss, then runs backward and the optimizer step.
func (rs *runState) backward(loss *torch.Tensor) (float64, error) {
	v, err := loss.Item()
	if err != nil {
		return 0, err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v, fmt.Errorf("%w: %v", errNonFinite, v)
	}
	if err := rs.opt.ZeroGrad(); err != nil {
		return v, err
	}
	if err := loss.Backward(); err != nil {
		return v, err
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
