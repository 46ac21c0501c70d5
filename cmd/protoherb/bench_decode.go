package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"protoherb/imageio"
	"protoherb/infer"
)

// benchDecodeFlags are `bench decode`'s settings.
type benchDecodeFlags struct {
	dir                   string
	size, resize, workers int
	generate, passes      int
	tensor                bool
	python                string
	rounds                int
	whole                 bool
	quietWait             time.Duration
	tries                 int
}

func newBenchDecodeCmd() *cobra.Command {
	var f benchDecodeFlags
	cmd := &cobra.Command{
		Use:   "decode",
		Short: "Images/s for JPEG decode + resize + centre crop (files read into memory first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.dir == "" {
				return usageErrorf("--dir is required")
			}
			return benchDecode(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "", "folder of .jpg files (created by --generate)")
	fl.IntVar(&f.size, "size", 224, "output side")
	fl.IntVar(&f.resize, "resize", 0, "shorter side before the centre crop (0 = size*256/224)")
	fl.IntVar(&f.workers, "workers", 1, "parallel decoding goroutines")
	fl.IntVar(&f.generate, "generate", 0, "first write this many synthetic 1024x1536 quality-90 JPEGs into --dir (if it has fewer)")
	fl.IntVar(&f.passes, "passes", 5, "passes over the files per worker")
	fl.IntVar(&f.rounds, "rounds", 1, "alternate this many protoherb and PIL measurements")
	fl.BoolVar(&f.whole, "whole", false, "decode whole images at the DCT scale (the path before region decoding), for comparison")
	fl.DurationVar(&f.quietWait, "quiet-wait", 60*time.Second, "before each try, wait up to this long for other processes to use under 8% of the CPUs")
	fl.IntVar(&f.tries, "tries", 3, "measure up to this many times while other load exceeds 5%, keeping the cleanest")
	fl.StringVar(&f.python, "python", "/usr/bin/python3", "Python with PIL for the reference run (PIL draft decode + bilinear resize in --workers processes on the same files); empty skips it")
	fl.BoolVar(&f.tensor, "tensor", false, "also convert to normalised float32 CHW (the loader's full work)")
	return cmd
}

// benchDecode reads the files into memory and runs the rounds; the last line is `decode: X images/s`.
func benchDecode(ctx context.Context, out io.Writer, f benchDecodeFlags) error {
	paths, blobs, err := readJPEGs(ctx, out, f.dir, f.generate)
	if err != nil {
		return err
	}
	if f.resize == 0 {
		f.resize = f.size * 256 / 224
	}
	m, err := imageio.DecodeBytes(blobs[0], 0)
	if err != nil {
		return fmt.Errorf("%s: %w", paths[0], err)
	}
	total := 0
	for _, b := range blobs {
		total += len(b)
	}
	what := "decode + resize + crop (uint8)"
	if f.tensor {
		what = "decode + resize + crop + normalise (float32 CHW)"
	}
	fmt.Fprintf(out, "# %d JPEGs %dx%d, mean %.0f KiB; %s to %d (shorter side %d); %d workers x %d passes\n",
		len(blobs), m.W, m.H, float64(total)/float64(len(blobs))/1024, what, f.size, f.resize, f.workers, f.passes)
	fmt.Fprintf(out, "# load average before: %s\n", loadAvg())
	dc := decodeConfig{blobs: blobs, tr: imageio.Transform{Size: f.size, Resize: f.resize}, tensor: f.tensor,
		whole: f.whole, workers: f.workers, passes: f.passes}
	if err := dc.run(0, min(len(blobs), 8)); err != nil { // warm-up
		return err
	}
	// Alternate protoherb and PIL rounds so that both see the same drift of the shared machine's
	// load; report the median round of each and the median of the rounds' ratios.
	var rates, refs, ratios, cpuRatios []float64
	for r := range max(f.rounds, 1) {
		rate, cpu, foreign, err := dc.timed(out, f.tries, f.quietWait)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "round %d: protoherb %.0f images/s (%.0f per worker), %.2f ms CPU per image; foreign CPU load during the run %.0f%%\n",
			r+1, rate, rate/float64(f.workers), cpu, foreign*100)
		rates = append(rates, rate)
		if f.python == "" || f.tensor {
			continue
		}
		ref, refCPU, err := pilReference(out, f.python, f.dir, f.size, f.resize, f.workers, f.passes)
		if err != nil {
			fmt.Fprintf(out, "# PIL reference skipped: %v\n", err)
			f.python = ""
			continue
		}
		refs, ratios, cpuRatios = append(refs, ref), append(ratios, rate/ref), append(cpuRatios, refCPU/cpu)
		fmt.Fprintf(out, "round %d: protoherb / PIL draft: %.2f× in images/s (%.0f against %.0f, %d workers each), %.2f× in CPU per image (%.2f against %.2f ms)\n",
			r+1, rate/ref, rate, ref, f.workers, refCPU/cpu, cpu, refCPU)
	}
	rate := median(rates)
	if len(ratios) > 0 {
		fmt.Fprintf(out, "protoherb / PIL draft, median of %d alternating rounds: %.2f× in images/s (medians %.0f and %.0f), %.2f× in CPU per image\n",
			len(ratios), median(ratios), rate, median(refs), median(cpuRatios))
	}
	fmt.Fprintf(out, "decode: %.0f images/s\n", rate)
	return nil
}

// readJPEGs reads dir's .jpg files (in name order) into memory, first generating synthetic sheets
// when it holds fewer than generate; it returns the paths and their bytes.
func readJPEGs(ctx context.Context, out io.Writer, dir string, generate int) ([]string, [][]byte, error) {
	if generate > 0 {
		paths, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
		if len(paths) < generate {
			fmt.Fprintf(out, "# generating %d synthetic 1024x1536 q90 specimen JPEGs in %s\n", generate, dir)
			if _, err := imageio.GenerateJPEGs(ctx, dir, generate, 1024, 1536, 90, 1000); err != nil {
				return nil, nil, err
			}
		}
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.jpg"))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		return nil, nil, fmt.Errorf("%s: no .jpg files (use --generate N)", dir)
	}
	blobs := make([][]byte, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		blobs = append(blobs, b)
	}
	return paths, blobs, nil
}

// decodeConfig is one decode benchmark: the files in memory and what to do with each.
type decodeConfig struct {
	blobs           [][]byte
	tr              imageio.Transform
	tensor, whole   bool
	workers, passes int
}

// run decodes n images on one worker (worker w starts at a different file).
func (dc *decodeConfig) run(w, n int) error {
	p, err := imageio.NewProcessor()
	if err != nil {
		return err
	}
	defer p.Close()
	p.DecodeWhole = dc.whole
	size := dc.tr.Size
	buf := make([]float32, 3*size*size)
	for k := 0; k < n; k++ {
		b := dc.blobs[(k+w*7)%len(dc.blobs)]
		if dc.tensor {
			err = p.Tensor(b, &dc.tr, nil, 0, 0, buf)
		} else {
			_, _, err = p.Crop(b, &dc.tr, nil, 0)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// timed runs every worker over passes × the files and returns images/s and the CPU share other
// processes used meanwhile; under foreign load it retries (up to tries) and keeps the cleanest.
func (dc *decodeConfig) timed(out io.Writer, tries int, quietWait time.Duration) (rate, cpuMs, foreign float64, err error) {
	perWorker := len(dc.blobs) * dc.passes
	n := float64(perWorker * dc.workers)
	bestEl, bestCPU, bestForeign := 0.0, 0.0, 2.0
	for t := 0; t < max(tries, 1); t++ {
		if waited := waitQuiet(quietWait); waited > 2*time.Second {
			fmt.Fprintf(out, "# waited %.0f s for a quiet machine\n", waited.Seconds())
		}
		busy0, all0 := procStat()
		own0 := ownCPU()
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, dc.workers)
		for w := 0; w < dc.workers; w++ {
			wg.Add(1)
			go func() { defer wg.Done(); errs[w] = dc.run(w, perWorker) }()
		}
		wg.Wait()
		el := time.Since(t0).Seconds()
		busy1, all1 := procStat()
		own := ownCPU() - own0
		for _, e := range errs {
			if e != nil {
				return 0, 0, 0, e
			}
		}
		foreign := 0.0
		if all1 > all0 {
			foreign = max(0, (float64(busy1-busy0)-own*clkTck)/float64(all1-all0))
		}
		if foreign < bestForeign {
			bestEl, bestCPU, bestForeign = el, own, foreign
		}
		if foreign <= 0.05 {
			break
		}
		if t+1 < tries {
			fmt.Fprintf(out, "# foreign CPU load %.0f%% during the run; retrying\n", foreign*100)
		}
	}
	return n / bestEl, bestCPU / n * 1e3, bestForeign, nil
}

// median returns the median of xs (sorted in place): the mean of the middle two for an even count,
// so that two rounds report their mean, not the better one.
func median(xs []float64) float64 {
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[n/2]
}

// benchDecodePIL is PIL's side of the comparison (see --python).
//
//go:embed bench_decode_pil.py
var benchDecodePIL string

// pilReference times PIL's draft decoding with the same files, sizes, workers and passes: images/s
// and CPU ms per image.
func pilReference(out io.Writer, python, dir string, size, resize, workers, passes int) (float64, float64, error) {
	if err := exec.Command(python, "-c", "import PIL").Run(); err != nil {
		return 0, 0, fmt.Errorf("%s cannot import PIL (%v); install python3-pil", python, err)
	}
	fmt.Fprintf(out, "# PIL draft decode + resize, %d processes:\n", workers)
	rate, text, err := pythonReference(out, python, "bench_decode_pil.py", benchDecodePIL, "pil:", nil,
		dir, strconv.Itoa(size), strconv.Itoa(resize), strconv.Itoa(workers), strconv.Itoa(passes))
	if err != nil {
		return 0, 0, err
	}
	cpu, err := parseFigure(text, "pil-cpu:")
	return rate, cpu, err
}

const clkTck = 100 // USER_HZ on Linux

// procStat returns busy and total jiffies over all CPUs from /proc/stat.
func procStat() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i := 1; i < len(f) && i <= 8; i++ {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		total += v
		if i != 4 && i != 5 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// ownCPU is this process's user+system CPU time in seconds.
func ownCPU() float64 { return infer.ProcessCPU().Seconds() }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// waitQuiet waits (up to max) until other processes use under 8% of all CPUs over a second; it
// returns how long it waited.
func waitQuiet(limit time.Duration) time.Duration {
	t0 := time.Now()
	for {
		b0, a0 := procStat()
		time.Sleep(time.Second)
		b1, a1 := procStat()
		if a1 <= a0 || float64(b1-b0)/float64(a1-a0) < 0.08 || time.Since(t0) > limit {
			return time.Since(t0)
		}
		time.Sleep(2 * time.Second)
	}
}
