package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"protoherb/nn"
	"protoherb/torch"
)

// benchStepFlags are `bench step`'s settings.
type benchStepFlags struct {
	model                         string
	way, shot, query, size, chans int
	threads, steps, warmup, embed int
	tries                         int
	quietWait                     time.Duration
	channelsLast                  bool
	seed                          uint64
}

func newBenchStepCmd() *cobra.Command {
	var f benchStepFlags
	cmd := &cobra.Command{
		Use:   "step",
		Short: "Time one prototypical training step (forward, loss, backward, Adam)",
		Long: `Times one episodic prototypical-network training step on random images: embed the support and
query images in one batch, prototypes = mean support embedding per class, logits = -squared
distance to each prototype, cross-entropy, backward, Adam step; each step in a torch.Scope that is
reset after it. Prints the median over --steps after --warmup steps; last line "step: X ms/step".
The defaults are the prototypical-networks Omniglot episode (60-way 5-shot 5-query, 28x28x1).`,
		RunE: func(cmd *cobra.Command, args []string) error { return benchStep(cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "conv4", "backbone: conv4, resnet12, resnet18, resnet50 or torchscript:PATH")
	fl.IntVar(&f.way, "way", 60, "classes per episode")
	fl.IntVar(&f.shot, "shot", 5, "support images per class")
	fl.IntVar(&f.query, "query", 5, "query images per class")
	fl.IntVar(&f.size, "size", 28, "image height and width")
	fl.IntVar(&f.chans, "channels", 1, "image channels")
	fl.IntVar(&f.embed, "embed-dim", 0, "linear embedding head size (0: none)")
	fl.IntVar(&f.threads, "threads", 0, "libtorch intra-op threads (0: number of cores)")
	fl.IntVar(&f.steps, "steps", 20, "timed steps (the median is reported)")
	fl.IntVar(&f.warmup, "warmup", 3, "untimed steps first")
	fl.IntVar(&f.tries, "tries", 1, "time the steps up to this many times while other processes use over 5% of the CPUs, keeping the cleanest")
	fl.DurationVar(&f.quietWait, "quiet-wait", 0, "before each try, wait up to this long for other processes to use under 8% of the CPUs")
	fl.BoolVar(&f.channelsLast, "channels-last", false, "run convolutions on NHWC memory layout")
	fl.Uint64Var(&f.seed, "seed", 1, "random seed")
	return cmd
}

// benchStep builds the model and its Adam optimizer on the CPU, runs --warmup untimed steps and then
// the timed ones on one random episode, and prints the setup, the median step time with its spread
// and throughput, the foreign CPU load and, last, "step: X ms/step".
func benchStep(out io.Writer, f benchStepFlags) error {
	if f.way < 2 || f.shot < 1 || f.query < 1 || f.steps < 1 || f.warmup < 0 || f.size < 1 || f.chans < 1 {
		return fmt.Errorf("bench step: need --way >= 2, --shot, --query, --steps, --size, --channels >= 1 and --warmup >= 0")
	}
	defaultThreads := torch.NumThreads()
	if f.threads <= 0 {
		f.threads = runtime.NumCPU()
	}
	torch.SetNumThreads(f.threads)
	if err := torch.ManualSeed(f.seed); err != nil {
		return err
	}
	m, err := nn.New(nn.Config{Backbone: f.model, InChannels: f.chans, ImageSize: f.size, EmbedDim: f.embed,
		Device: torch.CPU, ChannelsLast: f.channelsLast})
	if err != nil {
		return err
	}
	defer m.Close()
	opt, err := torch.NewAdam(nn.Tensors(m.Parameters()), torch.AdamOptions{LR: 1e-3})
	if err != nil {
		return err
	}
	defer opt.Close()

	ep := newStepEpisode(f)
	n := ep.n()
	fmt.Fprintf(out, "model=%s %d-way %d-shot %d-query %dx%dx%d (%d images/step) embed=%d channels-last=%v\n",
		f.model, f.way, f.shot, f.query, f.size, f.size, f.chans, n, m.EmbedDim(), f.channelsLast)
	fmt.Fprintf(out, "threads: %d (libtorch default here was %d; cores %d)\n", torch.NumThreads(), defaultThreads, runtime.NumCPU())

	s := torch.NewScope()
	defer s.Close()
	step := func() (float64, error) {
		return protoStep(s, m, opt, ep.images, ep.shape, ep.target, ep.way, ep.shot, ep.query)
	}
	for range f.warmup {
		if _, err := step(); err != nil {
			return err
		}
	}
	times, bestForeign, loss, err := timeSteps(out, f, step)
	if err != nil {
		return err
	}
	slices.Sort(times)
	med := times[len(times)/2]
	fmt.Fprintf(out, "median %.1f ms/step (min %.1f, max %.1f, %d steps after %d warm-up) = %.0f images/s; last loss %.4f\n",
		med, times[0], times[len(times)-1], f.steps, f.warmup, float64(n)/med*1e3, loss)
	fmt.Fprintf(out, "foreign CPU load during the timed steps %.0f%%; load average %s\n", bestForeign*100, loadAvg())
	fmt.Fprintf(out, "step: %.1f ms/step\n", med)
	return nil
}

// stepEpisode is the one random episode every step of `bench step` trains on: support then query
// images, both class-major, and the query labels.
type stepEpisode struct {
	images           []float32
	shape            []int64 // NCHW
	target           []int64
	way, shot, query int
}

// newStepEpisode draws f's episode: standard normal pixels from a generator seeded with --seed, and
// the query labels.
func newStepEpisode(f benchStepFlags) stepEpisode {
	ep := stepEpisode{way: f.way, shot: f.shot, query: f.query}
	n := ep.n()
	rng := rand.New(rand.NewPCG(f.seed, 2))
	ep.images = make([]float32, n*f.chans*f.size*f.size)
	for i := range ep.images {
		ep.images[i] = float32(rng.NormFloat64())
	}
	ep.shape = []int64{int64(n), int64(f.chans), int64(f.size), int64(f.size)}
	ep.target = make([]int64, f.way*f.query)
	for i := range ep.target {
		ep.target[i] = int64(i / f.query) // queries are class-major
	}
	return ep
}

// n is the number of images in the episode, support and query.
func (ep stepEpisode) n() int { return ep.way * (ep.shot + ep.query) }

// timeSteps times --steps calls of step and returns their times in ms, the share of the CPUs other
// processes used meanwhile and the last step's loss. While other processes used more than 5% of the
// CPUs meanwhile, it tries again (up to --tries, each after waiting up to --quiet-wait for a quiet
// machine) and keeps the cleanest try.
func timeSteps(out io.Writer, f benchStepFlags, step func() (float64, error)) (times []float64, bestForeign, loss float64, err error) {
	bestForeign = 2.0
	for try := range max(f.tries, 1) {
		if waited := waitQuiet(f.quietWait); waited > 2*time.Second {
			fmt.Fprintf(out, "# waited %.0f s for a quiet machine\n", waited.Seconds())
		}
		busy0, all0 := procStat()
		own0 := ownCPU()
		var ts []float64
		for range f.steps {
			t0 := time.Now()
			if loss, err = step(); err != nil {
				return nil, 0, 0, err
			}
			ts = append(ts, float64(time.Since(t0).Microseconds())/1e3)
		}
		busy1, all1 := procStat()
		foreign := 0.0
		if all1 > all0 {
			foreign = max(0, (float64(busy1-busy0)-(ownCPU()-own0)*clkTck)/float64(all1-all0))
		}
		if foreign < bestForeign {
			times, bestForeign = ts, foreign
		}
		if foreign <= 0.05 {
			break
		}
		if try+1 < f.tries {
			fmt.Fprintf(out, "# foreign CPU load %.0f%% during the run; retrying\n", foreign*100)
		}
	}
	return times, bestForeign, loss, nil
}

// protoStep runs one prototypical training step on an episode (support then query images, both
// class-major; copied into the step's scope as a data loader's batch would be) and returns the loss.
// Every tensor it makes lives in s, which it resets.
func protoStep(s *torch.Scope, m *nn.Model, opt *torch.Optimizer, images []float32, shape []int64, target []int64,
	way, shot, query int) (float64, error) {
	defer s.Reset()
	x := torch.FromFloat32(s, images, shape...)
	y := torch.FromInt64(s, target, int64(len(target)))
	emb := m.Embed(x, true)
	d := int64(m.EmbedDim())
	ns := int64(way * shot)
	protos := emb.Narrow(0, 0, ns).Reshape(int64(way), int64(shot), d).Mean(false, 1)
	q := emb.Narrow(0, ns, int64(way*query))
	logits := torch.SquaredDistances(q, protos).Neg()
	loss := torch.CrossEntropy(logits, y, 0, torch.ReduceMean)
	if err := opt.ZeroGrad(); err != nil {
		return 0, err
	}
	if err := loss.Backward(); err != nil {
		return 0, err
	}
	if err := opt.Step(); err != nil {
		return 0, err
	}
	return loss.Item()
}
