package main

import (
	_ "embed"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"protoherb/imageio"
	"protoherb/infer"
	"protoherb/nn"
	"protoherb/torch"
)

// benchEmbedTorch is PyTorch's side of the comparison, run with --python.
//
//go:embed bench_embed_torch.py
var benchEmbedTorch string

// tunedMalloc is the torch shim's allocator setting (one arena, no mmap, pages kept) written for
// glibc's tunables, so that PyTorch runs like for like.
const tunedMalloc = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647:glibc.malloc.arena_max=1:glibc.malloc.top_pad=67108864"

type benchEmbedFlags struct {
	backbone             string
	size, batch, threads int
	iters, warmup, chunk int
	rounds               int
	channelsLast         bool
	foldBN, prepack      bool
	torchModes           []string
	python               string
	pythonMalloc         string
	device               string
	seed                 uint64
}

func newBenchEmbedCmd() *cobra.Command {
	var f benchEmbedFlags
	cmd := &cobra.Command{
		Use:   "embed",
		Short: "Forward passes per second of a backbone (eval, no-grad, random input), beside PyTorch's",
		Long: `Times the forward passes "protoherb embed" runs (eval mode, no gradient, through the same
embedder: input copied in, embeddings copied out) on random images of --batch x 3 x --image-size²,
and prints the median over --iters batches after --warmup. In the same run it times PyTorch on the
same model (torchvision's ResNet with fc removed, or the reference Conv-4) with --python
(default /usr/bin/python3; skipped with a message when it lacks torch), with the same threads,
batch, memory format and, unless --python-malloc default, the allocator settings protoherb's
libtorch shim uses. Last line: "embed: X images/s".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runBenchEmbed(cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.backbone, "backbone", "resnet18", "conv4, resnet12, resnet18 or resnet50")
	fl.IntVar(&f.size, "image-size", 224, "input height and width (3 channels)")
	fl.IntVar(&f.batch, "batch", 32, "images per forward call")
	fl.IntVar(&f.threads, "threads", 0, "libtorch intra-op threads (0: number of cores)")
	fl.IntVar(&f.iters, "iters", 10, "timed batches (the median is reported)")
	fl.IntVar(&f.warmup, "warmup", 2, "untimed batches first")
	fl.IntVar(&f.chunk, "chunk", 0, "most images per libtorch call inside a batch (0: the whole batch)")
	fl.IntVar(&f.rounds, "rounds", 1, "alternate this many protoherb and PyTorch measurements")
	fl.BoolVar(&f.channelsLast, "channels-last", false, "run convolutions on NHWC memory layout (both sides; embed, prototypes, predict and serve do by default)")
	fl.BoolVar(&f.foldBN, "fold-bn", true, "fold batch norms into the convolutions, as embed does (both sides: PyTorch through torch.fx's fuse)")
	fl.BoolVar(&f.prepack, "prepack", true, "run the folded convolutions prepacked for oneDNN with their ReLUs fused, as embed does on CPU (protoherb's side; needs --fold-bn)")
	fl.StringSliceVar(&f.torchModes, "torch-mode", []string{"eager"}, "how PyTorch runs the model, one or more of: eager (the nn.Module), prepacked (the same prepacked convolutions as protoherb's, through torch.fx), ofi (torch.jit.optimize_for_inference); each round times every one")
	fl.StringVar(&f.python, "python", "/usr/bin/python3", "Python with torch (and torchvision) for the reference; empty skips it")
	fl.StringVar(&f.pythonMalloc, "python-malloc", "tuned", "allocator for the PyTorch run: tuned (protoherb's settings, like for like) or default (glibc's)")
	fl.Uint64Var(&f.seed, "seed", 1, "random seed of the weights and input")
	fl.StringVar(&f.device, "device", "cpu", "cpu, cuda or cuda:N (both sides; input copied from host memory and embeddings back, as embed does)")
	return cmd
}

func runBenchEmbed(out io.Writer, f benchEmbedFlags) error {
	if f.size < 1 || f.batch < 1 || f.iters < 1 || f.warmup < 0 {
		return fmt.Errorf("bench embed: need --image-size, --batch, --iters >= 1 and --warmup >= 0")
	}
	if f.pythonMalloc != "tuned" && f.pythonMalloc != "default" {
		return fmt.Errorf("bench embed: --python-malloc %q: want tuned or default", f.pythonMalloc)
	}
	for _, mode := range f.torchModes {
		if mode != "eager" && mode != "prepacked" && mode != "ofi" {
			return fmt.Errorf("bench embed: --torch-mode %q: want eager, prepacked or ofi", mode)
		}
	}
	if f.threads <= 0 {
		f.threads = runtime.NumCPU()
	}
	torch.SetNumThreads(f.threads)
	if err := torch.ManualSeed(f.seed); err != nil {
		return err
	}
	dev, err := torch.ParseDevice(f.device)
	if err != nil {
		return fmt.Errorf("bench embed: %w", err)
	}
	m, err := nn.New(nn.Config{Backbone: f.backbone, InChannels: 3, ImageSize: f.size, Device: dev, ChannelsLast: f.channelsLast})
	if err != nil {
		return fmt.Errorf("bench embed: %w", err)
	}
	e := infer.NewModelEmbedder(m, imageio.Transform{Size: f.size, Channels: 3})
	defer e.Close()
	if f.foldBN {
		if err := m.FoldBatchNorm(); err != nil {
			return fmt.Errorf("bench embed: %w", err)
		}
	}
	if f.prepack && f.foldBN {
		if err := m.PrepackConvolutions(); err != nil {
			return fmt.Errorf("bench embed: %w", err)
		}
	}
	e.Chunk = f.chunk
	rng := rand.New(rand.NewPCG(f.seed, 3))
	x := make([]float32, f.batch*3*f.size*f.size)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	fmt.Fprintf(out, "# %s %dpx batch=%d device=%s threads=%d channels-last=%v fold-bn=%v prepack=%v chunk=%d embed-dim=%d; load average %s\n",
		f.backbone, f.size, f.batch, dev, torch.NumThreads(), f.channelsLast, f.foldBN, f.prepack && f.foldBN, f.chunk, e.Dim(), loadAvg())
	if f.python == "" {
		fmt.Fprintln(out, "# PyTorch reference skipped: --python is empty")
	}
	rates, err := compareRounds(out, e, x, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "embed: %.1f images/s\n", median(rates))
	return nil
}

// compareRounds alternates protoherb's timing with PyTorch's in each of f.torchModes, so both see the
// same drift of a shared machine's load, prints each round's ratios and their medians, and returns
// protoherb's images/s of every round.
func compareRounds(out io.Writer, e *infer.ModelEmbedder, x []float32, f benchEmbedFlags) ([]float64, error) {
	var rates []float64
	ratios, cpuRatios := map[string][]float64{}, map[string][]float64{}
	for r := range max(f.rounds, 1) {
		rate, cpu, err := timeEmbed(out, e, x, f)
		if err != nil {
			return nil, err
		}
		rates = append(rates, rate)
		for _, mode := range f.torchModes {
			if f.python == "" {
				break
			}
			ref, refCPU, err := torchReference(out, f, mode)
			if err != nil {
				fmt.Fprintf(out, "# PyTorch reference skipped: %v\n", err)
				f.python = ""
				break
			}
			ratios[mode], cpuRatios[mode] = append(ratios[mode], rate/ref), append(cpuRatios[mode], refCPU/cpu)
			fmt.Fprintf(out, "round %d: protoherb / PyTorch %s: %.2f× in images/s (%.1f against %.1f), %.2f× in CPU per image (%.1f against %.1f ms)\n",
				r+1, mode, rate/ref, rate, ref, refCPU/cpu, cpu, refCPU)
		}
	}
	for _, mode := range f.torchModes {
		if rs := ratios[mode]; len(rs) > 0 {
			fmt.Fprintf(out, "protoherb / PyTorch %s, median of %d alternating rounds: %.2f× in images/s, %.2f× in CPU per image\n",
				mode, len(rs), median(rs), median(cpuRatios[mode]))
		}
	}
	return rates, nil
}

// timeEmbed runs the forward passes and returns images/s (median batch) and CPU ms per image.
func timeEmbed(out io.Writer, e *infer.ModelEmbedder, x []float32, f benchEmbedFlags) (float64, float64, error) {
	var ts []float64
	var cpu0 float64
	for i := range f.warmup + f.iters {
		if i == f.warmup {
			cpu0 = ownCPU()
		}
		t0 := time.Now()
		if _, err := e.Embed(x, f.batch); err != nil {
			return 0, 0, fmt.Errorf("bench embed: %w", err)
		}
		if i >= f.warmup {
			ts = append(ts, time.Since(t0).Seconds())
		}
	}
	cpu := (ownCPU() - cpu0) / float64(f.iters*f.batch) * 1e3
	slices.Sort(ts)
	med := ts[len(ts)/2]
	fmt.Fprintf(out, "protoherb: median %.1f ms/batch (min %.1f, max %.1f, %d batches) = %.1f images/s, %.1f ms CPU per image\n",
		med*1e3, ts[0]*1e3, ts[len(ts)-1]*1e3, f.iters, float64(f.batch)/med, cpu)
	return float64(f.batch) / med, cpu, nil
}

// torchReference runs the embedded PyTorch script with f's settings and returns its images/s and
// CPU ms per image.
func torchReference(out io.Writer, f benchEmbedFlags, mode string) (float64, float64, error) {
	if f.backbone != "conv4" && f.backbone != "resnet18" && f.backbone != "resnet50" {
		return 0, 0, fmt.Errorf("%s has no PyTorch counterpart in the reference script", f.backbone)
	}
	if err := exec.Command(f.python, "-c", "import torch, torchvision").Run(); err != nil {
		return 0, 0, fmt.Errorf("%s cannot import torch and torchvision (%v); install python3-torch python3-torchvision", f.python, err)
	}
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	var env []string
	if f.pythonMalloc == "tuned" {
		env = append(env, "GLIBC_TUNABLES="+tunedMalloc)
	}
	fmt.Fprintf(out, "# PyTorch %s (allocator %s):\n", mode, f.pythonMalloc)
	v, text, err := pythonReference(out, f.python, "bench_embed_torch.py", benchEmbedTorch, "torch:", env,
		strconv.Itoa(f.threads), f.backbone, strconv.Itoa(f.size), strconv.Itoa(f.batch), flag(f.channelsLast),
		strconv.Itoa(f.iters), strconv.Itoa(f.warmup), f.device, flag(f.foldBN), mode)
	if err != nil {
		return 0, 0, err
	}
	cpu, err := parseFigure(text, "torch-cpu:")
	return v, cpu, err
}

// pythonReference writes a reference script to a temporary folder, runs it with python (extra
// environment env), copies its output to out as comments and returns the value of its last line
// "name value unit", and the whole output.
func pythonReference(out io.Writer, python, file, script, name string, env []string, args ...string) (float64, string, error) {
	dir, err := os.MkdirTemp("", "protoherb-bench-ref-")
	if err != nil {
		return 0, "", err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return 0, "", err
	}
	c := exec.Command(python, append([]string{path}, args...)...)
	c.Env = append(os.Environ(), env...)
	b, err := c.CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %v: %s", python, file, err, strings.TrimSpace(string(b)))
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fmt.Fprintf(out, "#   %s\n", l)
	}
	v, err := parseFigure(string(b), name)
	return v, string(b), err
}

// parseFigure reads the value of the last line "name value unit" of a benchmark's output.
func parseFigure(s, name string) (float64, error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		rest, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), name)
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) == 0 {
			break
		}
		v, err := strconv.ParseFloat(fs[0], 64)
		if err != nil {
			return 0, fmt.Errorf("line %q: %w", lines[i], err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("no line %q in the output", name+" value")
}
