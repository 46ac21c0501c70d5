package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"protoherb/cmd/protoherb/internal/servebench"
	"protoherb/demo/service"
	"protoherb/infer"
	"protoherb/proto"
	"protoherb/serve"
	"protoherb/torch"
)

const benchServeLong = `Starts the server on 127.0.0.1 and drives POST /v1/identify with C concurrent clients for
--duration at each --clients level, while --enrol-clients enrol specimens; then checks that no
acknowledged enrolment is missing (live and after reloading the prototype file). --mix adds abusive
clients next to that load (bombs, stalled) and reports each run's peak RSS.

Without --model it serves a generated demo (--backbone, random weights, --image-size input, generated
specimen sheets of 320×480). With --enrol-species N it then serves a generated prototype file of N
species (of the model's embedding size) and times single-image enrolments into it.
The last line is "serve: X requests/s" at the highest client count.`

func newBenchServeCmd() *cobra.Command {
	var (
		o                                 servebench.Options
		images, demoDir, backbone         string
		threads, imgSize, demoSpec, scale int
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Load test of protoherb serve on 127.0.0.1: requests/s, p50/p95/p99 latency, errors, lost enrolments",
		Long:  benchServeLong,
		RunE: func(cmd *cobra.Command, args []string) error {
			torch.SetNumThreads(threads)
			o.Spec.Device = torch.CPU
			out := cmd.OutOrStdout()
			if o.Files.Model == "" {
				dir := demoDir
				if dir == "" {
					tmp, err := os.MkdirTemp("", "protoherb-bench-demo-")
					if err != nil {
						return err
					}
					defer os.RemoveAll(tmp)
					dir = tmp
				}
				glob, err := benchDemo(cmd.Context(), dir, &o, service.Options{Species: demoSpec, PerClass: 4, Reseed: torch.ManualSeed,
					ImageSize: imgSize, Backbone: backbone, ImageW: 320, ImageH: 480, Seed: 1})
				if err != nil {
					return err
				}
				images = cmp.Or(images, glob)
			}
			var err error
			if o.Images, err = readImages(images, 256); err != nil {
				return err
			}
			o.Out = out
			fmt.Fprintf(out, "mixes=%v clients=%v duration=%s enrol-clients=%d max-batch=%d batch-window=%s forward-chunk=%d channels-last=%v torch-threads=%d images=%d\n",
				o.Mixes, o.Clients, o.Duration, o.EnrolClients, o.Config.MaxBatch, o.Config.BatchWindow, o.Spec.Chunk, o.Spec.ChannelsLast, torch.NumThreads(), len(o.Images))
			rep, err := servebench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if rep.Lost > 0 {
				return fmt.Errorf("bench serve: %d enrolments lost", rep.Lost)
			}
			if scale > 0 {
				if err := enrolAtScale(cmd.Context(), o, scale); err != nil {
					return err
				}
			}
			printHeadline(out, rep.Levels[:len(o.Clients)])
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntSliceVar(&o.Clients, "clients", []int{1, 32}, "concurrent identify clients, one run per value (ascending)")
	fl.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each run")
	fl.StringSliceVar(&o.Mixes, "mix", []string{servebench.MixNormal}, "load mixes, each run at every --clients level: normal, bombs (decompression bombs and huge PNGs next to the load), stalled (130 stalled uploads next to the load)")
	fl.IntVar(&o.EnrolClients, "enrol-clients", 2, "clients enrolling specimens during each run")
	fl.DurationVar(&o.EnrolPause, "enrol-pause", 100*time.Millisecond, "pause between one client's enrolments")
	fl.StringVar(&o.Files.Model, "model", "", "model to serve (default: a generated Conv-4 demo)")
	fl.StringVar(&o.Files.Prototypes, "prototypes", "", "prototype file (copied; the copy receives the enrolments)")
	fl.StringVar(&o.Files.Index, "index", "", "specimen index (optional)")
	fl.StringVar(&o.Files.ImagesRoot, "images-root", "", "folder of the index's images")
	fl.StringVar(&images, "images", "", "glob of query images (default: the demo's specimens)")
	fl.StringVar(&demoDir, "demo-dir", "", "where to build the demo (default: a temporary folder)")
	fl.IntVar(&imgSize, "image-size", 112, "demo model input size")
	fl.StringVar(&backbone, "backbone", "resnet18", "demo model backbone (conv4, resnet12, resnet18, resnet50)")
	fl.IntVar(&demoSpec, "species", 64, "demo species")
	fl.IntVar(&scale, "enrol-species", 0, "also time enrolments into a generated prototype file of this many species (e.g. 32094, Herbarium 2020)")
	fl.IntVar(&o.Config.MaxBatch, "max-batch", 32, "images per forward pass at most")
	fl.DurationVar(&o.Config.BatchWindow, "batch-window", 5*time.Millisecond, "longest a batch waits")
	fl.IntVar(&threads, "threads", 0, "libtorch intra-op threads (0: number of cores)")
	fl.BoolVar(&o.Spec.ChannelsLast, "channels-last", true, "run convolutions on NHWC memory")
	fl.IntVar(&o.Spec.Chunk, "forward-chunk", -1, "most images per forward call within a batch (-1 = auto: 4 for Conv-4 on CPU, else the whole batch; 0 = whole batch)")
	return cmd
}

// printHeadline prints the scaling and, last, the requests/s at the highest client count of the
// first mix (normal by default; the others are printed above).
func printHeadline(out io.Writer, levels []servebench.Level) {
	last, first := levels[len(levels)-1], levels[0]
	if len(levels) > 1 && first.RequestsPerSecond > 0 {
		fmt.Fprintf(out, "scaling: %.2f× requests/s at %d clients vs %d\n", last.RequestsPerSecond/first.RequestsPerSecond, last.Clients, first.Clients)
	}
	fmt.Fprintf(out, "serve: %.1f requests/s\n", last.RequestsPerSecond)
}

// benchDemo builds the demo service in dir, points o at it and returns the glob of its specimens.
func benchDemo(ctx context.Context, dir string, o *servebench.Options, so service.Options) (string, error) {
	d, err := service.Make(ctx, dir, so)
	if err != nil {
		return "", err
	}
	o.Files = serve.Files{Model: d.Model, Prototypes: d.Prototypes, Index: d.Index, ImagesRoot: d.ImagesRoot}
	return filepath.Join(d.ImagesRoot, "*", "*.jpg"), nil
}

// readImages reads up to n files matching glob.
func readImages(glob string, n int) ([][]byte, error) {
	paths, err := filepath.Glob(glob)
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("bench serve: --images %q matches no files", glob)
	}
	var out [][]byte
	for _, p := range paths[:min(len(paths), n)] {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// enrolAtScale serves a generated prototype file of n species and times single-image enrolments
// into it over HTTP (embedding included), one client at a time.
func enrolAtScale(ctx context.Context, o servebench.Options, n int) error {
	emb, err := infer.LoadModel(o.Files.Model, o.Spec)
	if err != nil {
		return err
	}
	dim := emb.Dim()
	emb.Close()
	dir, err := os.MkdirTemp("", "protoherb-bench-enrol-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	protos, _, err := proto.GenerateScaleFixture(dir, n, 0, dim, 1)
	if err != nil {
		return err
	}
	out := o.Out
	o.Files.Prototypes, o.Files.Index, o.Files.ImagesRoot = protos, "", ""
	o.Clients, o.Mixes, o.EnrolClients, o.EnrolPause = []int{1}, []string{servebench.MixNormal}, 1, time.Millisecond
	o.Duration, o.Out = max(o.Duration, 5*time.Second), io.Discard
	rep, err := servebench.Run(ctx, o)
	if err != nil {
		return err
	}
	lat := rep.EnrolLatencies
	if len(lat) == 0 || rep.Lost > 0 {
		return fmt.Errorf("bench serve: enrolment at %d species: %d acknowledged, %d lost", n, len(lat), rep.Lost)
	}
	fmt.Fprintf(out, "enrolment at %d species × %d-d: %d enrolments, p50 %.1f ms, p95 %.1f ms, max %.1f ms (HTTP, one image, embedding included)\n",
		n, dim, len(lat), msOf(lat[len(lat)/2]), msOf(lat[min(len(lat)-1, len(lat)*95/100)]), msOf(lat[len(lat)-1]))
	return nil
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
