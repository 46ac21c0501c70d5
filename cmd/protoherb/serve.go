package main

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"protoherb/demo/service"
	"protoherb/infer"
	"protoherb/serve"
	"protoherb/torch"
)

const serveLong = `Serves a trained model and its prototypes over HTTP.

  POST /v1/identify?k=5   image (multipart field "image" or raw JPEG/PNG) → top-k species with
                          calibrated probabilities and the nearest training specimens
  GET  /v1/species[/ID]   the species known;  POST /v1/species enrols one (name, genus, family, images)
  GET  /healthz, /metrics, /v1/info;  GET / is the web page

--demo DIR builds (once) a tiny random-weight model with generated specimens in DIR and serves it,
to try the page without a trained model.`

func newServeCmd() *cobra.Command {
	var (
		f                                         serve.Files
		b                                         buildFlags
		spec                                      infer.ModelSpec
		cfg                                       serve.Config
		addr, device, demo                        string
		threads, maxUploadMB, decodeMB, uploadsMB int
		readTimeout, writeTimout                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Identification service: JSON API under /v1, web page at /, live enrolment of species",
		Long:  serveLong,
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := torch.ParseDevice(device)
			if err != nil {
				return err
			}
			torch.SetNumThreads(threads)
			spec.Device = dev
			if demo != "" && f.Model == "" {
				d, err := service.Ensure(cmd.Context(), demo, torch.ManualSeed)
				if err != nil {
					return err
				}
				f = serve.Files{Model: d.Model, Prototypes: d.Prototypes, Index: d.Index, ImagesRoot: d.ImagesRoot, TokenFile: f.TokenFile}
			}
			if f.Model == "" || f.Prototypes == "" {
				return usageErrorf("serve: --model and --prototypes are required (or --demo DIR)")
			}
			f.Build = b.edit(cmd.Flags())
			cfg.MaxUploadBytes = int64(maxUploadMB) << 20
			cfg.DecodeBudget, cfg.UploadBudget = int64(decodeMB)<<20, int64(uploadsMB)<<20
			cfg.ReadTimeout, cfg.WriteTimeout = readTimeout, writeTimout
			cfg.Logger = slog.Default()
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			defer ln.Close()
			if err := serve.CheckExposure(ln.Addr(), f.TokenFile != "", cfg.OpenEnrolment); err != nil {
				return err // before loading anything
			}
			s, closeAll, err := serve.Open(f, spec, cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			slog.Info("serve: listening", "url", "http://"+ln.Addr().String()+"/")
			return s.Serve(cmd.Context(), ln)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Model, "model", "", "checkpoint folder, run folder (best, else latest) or weights (.safetensors, or PyTorch .pth/.pt with --backbone and --image-size)")
	fl.StringVar(&f.Prototypes, "prototypes", "", "prototype store (protoherb prototypes); enrolments are saved to it atomically (created at the first one when missing)")
	b.register(fl) // override the build recorded in the prototype file, as in predict
	fl.StringVar(&f.Index, "index", "", "embeddings of the training specimens (safetensors), for nearest specimens and thumbnails")
	fl.StringVar(&f.ImagesRoot, "images-root", "", "folder the index's image paths are relative to (default: the dataset folder recorded by embed, else the index's folder)")
	fl.StringVar(&f.TokenFile, "token-file", "", "file holding a bearer token required by POST /v1/species (required off loopback unless --open-enrolment)")
	fl.StringVar(&addr, "addr", "127.0.0.1:8080", "listen address")
	fl.StringVar(&demo, "demo", "", "serve a tiny generated demo built in this folder (when --model is not given)")
	fl.IntVar(&cfg.MaxBatch, "max-batch", 32, "images per forward pass at most")
	fl.DurationVar(&cfg.BatchWindow, "batch-window", 5*time.Millisecond, "longest a batch waits for more requests")
	fl.IntVar(&cfg.MaxConcurrent, "max-concurrent", 0, "identify requests in flight before answering 503 (0 = 4 × max-batch)")
	fl.IntVar(&maxUploadMB, "max-upload-mb", 20, "largest image upload, MiB (413 above)")
	fl.IntVar(&cfg.MaxPixels, "max-pixels", serve.DefaultMaxPixels, "most pixels an upload may declare, checked before decoding (413 above)")
	fl.IntVar(&decodeMB, "decode-budget", serve.DefaultDecodeBudget>>20, "MiB that all image decodes in progress may hold together (width × height × bytes per pixel; decodes wait beyond)")
	fl.IntVar(&uploadsMB, "upload-budget", serve.DefaultUploadBudget>>20, "MiB of uploads being received at once (503 beyond)")
	fl.DurationVar(&cfg.BodyTimeout, "body-timeout", 30*time.Second, "time to receive a request's body, read before it takes a compute slot (408 after)")
	fl.BoolVar(&cfg.OpenEnrolment, "open-enrolment", false, "allow serving on a non-loopback address without --token-file (anyone who reaches it can enrol)")
	fl.IntVar(&cfg.MaxK, "max-k", 100, "largest k a client may ask for")
	fl.Float64Var(&cfg.Temperature, "temperature", 0, "softmax temperature over −distance (0 = fit on --index, else a prototype-spacing heuristic)")
	fl.DurationVar(&readTimeout, "read-timeout", 60*time.Second, "time to read a whole request (slow clients are cut off)")
	fl.DurationVar(&writeTimout, "write-timeout", 60*time.Second, "time to write a response")
	fl.StringVar(&device, "device", "cpu", "cpu, cuda or cuda:N")
	fl.IntVar(&threads, "threads", 0, "libtorch intra-op threads (0: number of cores)")
	registerSpecFlags(fl, &spec)
	return cmd
}

// registerSpecFlags adds the flags that describe a model its file does not describe, and how to run
// it (serve, embed, prototypes, predict). Inference defaults to channels-last memory and, for
// Conv-4 on CPU, forward calls of 4 images: on this 2-core CPU, 2.2× Conv-4's images/s at 84 px
// and 1.15–1.25× the ResNets' (docs/benchmarks.md), with the same results to float32 rounding.
func registerSpecFlags(fl *pflag.FlagSet, spec *infer.ModelSpec) {
	fl.StringVar(&spec.Backbone, "backbone", "", "backbone when the model file does not say (conv4, resnet12, resnet18, resnet50, torchscript:PATH)")
	fl.IntVar(&spec.ImageSize, "image-size", 0, "model input size when the model file does not say")
	fl.IntVar(&spec.Channels, "channels", 0, "input channels when the model file does not say (default 3)")
	fl.IntVar(&spec.EmbedDim, "embed-dim", 0, "embedding head size when the model file does not say")
	fl.IntVar(&spec.Resize, "resize", 0, "shorter side before the centre crop (0 = image size)")
	fl.BoolVar(&spec.ChannelsLast, "channels-last", true, "run convolutions on NHWC memory (same results, faster on CPU)")
	fl.IntVar(&spec.Chunk, "forward-chunk", -1, "most images per forward call within a batch (-1 = auto: 4 for Conv-4 on CPU, else the whole batch; 0 = whole batch)")
}
