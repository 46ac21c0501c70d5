package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"protoherb/cluster"
	"protoherb/nn"
	"protoherb/torch"
)

// ddpTiming is what one timed configuration reports.
type ddpTiming struct {
	ImagesPerS  float64 `json:"images_per_s"` // of the whole job (every rank's images)
	ReduceShare float64 `json:"reduce_share"` // share of the step in the gradient all-reduce after backward
}

type benchDDPFlags struct {
	model          string
	batch, size    int
	steps, warmup  int
	classes, chans int
	child          bool
	afterBackward  bool
}

func newBenchDDPCmd() *cobra.Command {
	var f benchDDPFlags
	cmd := &cobra.Command{
		Use:   "ddp",
		Short: "Pretraining images/s of 1 process × 2 threads against 2 ranks × 1 thread (Gloo on loopback)",
		Long: `Times pretraining steps (classifier forward, cross-entropy, backward, SGD) on random images of
--batch images (the global batch) in two configurations on this machine: one process with 2
libtorch threads, and 2 ranks of 1 thread each (this binary started twice on 127.0.0.1, gradients
averaged by c10d's Gloo all-reduce in buckets during backward by c10d's Reducer, as training does).
With --after-backward the ranks average the gradients after backward instead (training's fallback)
and the all-reduce's share of the step is reported.
Last line "ddp: X ratio", the 2-rank rate over the 1-process rate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.batch < 2 || f.batch%2 != 0 || f.steps < 1 || f.warmup < 0 {
				return usageErrorf("bench ddp: need an even --batch >= 2, --steps >= 1, --warmup >= 0")
			}
			if f.child {
				return ddpChild(cmd, f)
			}
			out := cmd.OutOrStdout()
			torch.SetNumThreads(2)
			one, err := ddpSteps(f, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "1 process × 2 threads: %.1f images/s\n", one.ImagesPerS)
			two, err := ddpRanks(f)
			if err != nil {
				return err
			}
			if f.afterBackward {
				fmt.Fprintf(out, "2 ranks × 1 thread (Gloo, loopback, all-reduce after backward): %.1f images/s, all-reduce %.1f%% of the step\n", two.ImagesPerS, 100*two.ReduceShare)
			} else {
				fmt.Fprintf(out, "2 ranks × 1 thread (Gloo, loopback, all-reduce overlapped with backward): %.1f images/s\n", two.ImagesPerS)
			}
			fmt.Fprintf(out, "ddp: %.3f ratio\n", two.ImagesPerS/one.ImagesPerS)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "conv4", "backbone")
	fl.IntVar(&f.batch, "batch", 64, "global batch (images per step over all ranks)")
	fl.IntVar(&f.size, "size", 84, "image height and width")
	fl.IntVar(&f.chans, "channels", 3, "image channels")
	fl.IntVar(&f.classes, "classes", 100, "classifier outputs")
	fl.IntVar(&f.steps, "steps", 20, "timed steps")
	fl.IntVar(&f.warmup, "warmup", 3, "untimed steps first")
	fl.BoolVar(&f.afterBackward, "after-backward", false, "average the gradients after backward instead of during it (c10d's Reducer), and report the all-reduce's share")
	fl.BoolVar(&f.child, "rank-child", false, "internal: run as one rank of the 2-rank timing")
	_ = fl.MarkHidden("rank-child")
	return cmd
}

// ddpRanks starts this binary twice as the ranks of a 2-rank job and returns rank 0's report.
func ddpRanks(f benchDDPFlags) (ddpTiming, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ddpTiming{}, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := []string{"bench", "ddp", "--rank-child", "--model", f.model, "--batch", strconv.Itoa(f.batch), "--size", strconv.Itoa(f.size),
		"--channels", strconv.Itoa(f.chans), "--classes", strconv.Itoa(f.classes), "--steps", strconv.Itoa(f.steps), "--warmup", strconv.Itoa(f.warmup),
		"--after-backward=" + strconv.FormatBool(f.afterBackward)}
	outs := make([]strings.Builder, 2)
	cmds := make([]*exec.Cmd, 2)
	for r := range 2 {
		c := exec.Command(os.Args[0], args...)
		c.Env = append(os.Environ(), "RANK="+strconv.Itoa(r), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port))
		c.Stdout, c.Stderr = &outs[r], &outs[r]
		if err := c.Start(); err != nil {
			return ddpTiming{}, err
		}
		cmds[r] = c
	}
	for r, c := range cmds {
		if err := c.Wait(); err != nil {
			return ddpTiming{}, fmt.Errorf("bench ddp: rank %d: %v\n%s", r, err, outs[r].String())
		}
	}
	var t ddpTiming
	lines := strings.Split(strings.TrimSpace(outs[0].String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &t); err != nil {
		return t, fmt.Errorf("bench ddp: rank 0's report: %v\n%s", err, outs[0].String())
	}
	return t, nil
}

// ddpChild is one rank: it joins the job, times its share of the steps, and rank 0 prints the report.
func ddpChild(cmd *cobra.Command, f benchDDPFlags) error {
	role, err := cluster.FromEnv(os.Getenv)
	if err != nil {
		return err
	}
	torch.SetNumThreads(1)
	g, err := torch.NewGroup(torch.GroupOptions{MasterAddr: role.MasterAddr, MasterPort: role.MasterPort, Rank: role.Rank, Size: role.WorldSize, Timeout: time.Minute})
	if err != nil {
		return err
	}
	defer g.Close()
	t, err := ddpSteps(f, g)
	if err != nil {
		return err
	}
	if role.Rank == 0 {
		b, _ := json.Marshal(t)
		fmt.Fprintln(cmd.OutOrStdout(), string(b))
	}
	return nil
}

// ddpSteps times pretraining steps on this process's share of the batch (all of it without g).
func ddpSteps(f benchDDPFlags, g *torch.Group) (ddpTiming, error) {
	if err := torch.ManualSeed(1); err != nil {
		return ddpTiming{}, err
	}
	m, err := nn.New(nn.Config{Backbone: f.model, InChannels: f.chans, ImageSize: f.size, NumClasses: f.classes, Device: torch.CPU})
	if err != nil {
		return ddpTiming{}, err
	}
	defer m.Close()
	params := nn.Tensors(m.Parameters())
	opt, err := torch.NewSGD(params, torch.SGDOptions{LR: 0.01, Momentum: 0.9})
	if err != nil {
		return ddpTiming{}, err
	}
	defer opt.Close()
	world := 1
	if g != nil {
		world = g.Size()
	}
	n := f.batch / world
	rng := rand.New(rand.NewPCG(2, uint64(world)))
	xs := make([]float32, n*f.chans*f.size*f.size)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	ys := make([]int64, n)
	for i := range ys {
		ys[i] = int64(rng.IntN(f.classes))
	}
	var red *torch.Reducer
	if g != nil && !f.afterBackward {
		if red, err = g.NewReducer(params, torch.DefaultBucketBytes); err != nil {
			return ddpTiming{}, err
		}
		if red != nil {
			defer red.Close()
		}
	}
	s := torch.NewScope()
	defer s.Close()
	var total, reduce time.Duration
	for i := range f.warmup + f.steps {
		t0 := time.Now()
		x := torch.FromFloat32(s, xs, int64(n), int64(f.chans), int64(f.size), int64(f.size))
		loss := torch.CrossEntropy(m.Logits(x, true), torch.FromInt64(s, ys, int64(n)), 0, torch.ReduceMean)
		if err := opt.ZeroGrad(); err != nil {
			return ddpTiming{}, err
		}
		if red != nil {
			if err := red.Prepare(loss); err != nil {
				return ddpTiming{}, err
			}
		}
		if err := loss.Backward(); err != nil {
			return ddpTiming{}, err
		}
		t1 := time.Now()
		if g != nil && red == nil {
			if err := g.AverageGrads(params, torch.DefaultBucketBytes); err != nil {
				return ddpTiming{}, err
			}
		}
		dr := time.Since(t1)
		if err := opt.Step(); err != nil {
			return ddpTiming{}, err
		}
		s.Reset()
		if i >= f.warmup {
			total += time.Since(t0)
			reduce += dr
		}
	}
	return ddpTiming{ImagesPerS: float64(f.batch*f.steps) / total.Seconds(), ReduceShare: reduce.Seconds() / total.Seconds()}, nil
}
