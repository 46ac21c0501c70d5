// Package pipeline runs protoherb from a dataset to a scored submission in one call, within a time
// budget: pretrain → episodic training → prototypes → predict → evaluate.
//
// # Plan
//
// Every choice the run makes is a field of Config, written to OUT/config.yaml before the stage it
// governs, so that `run --config OUT/config.yaml` makes the same run (zero fields are chosen):
//
//   - Backbone and image size, for the device and the budget (see chooseModel), or the backbone of
//     the --init file.
//   - The image geometry and test-time augmentation: each whole image stretched to the square
//     (resize: squash; fit keeps the aspect and pads, crop takes the centre square), and embeddings
//     averaged with the mirror image's (tta: flip). Across leaf99 and the synthetic herbarium squash
//     was the one geometry near the best on both; the flip adds 0.03–0.09 macro-F1
//     (docs/results/accuracy.md).
//   - Step counts: ten calibration steps measure the step time on this machine (their median after
//     the first two); the budget, less the time spent so far, the estimated embedding time of every
//     image and a safety margin, goes to pretraining a classifier on all classes (fitSteps), whose
//     embedding then gives the class means: at equal time on these 2 cores this beat giving 40% of
//     it to episodic training on both leaf99 and the synthetic herbarium
//     (docs/results/accuracy.md). --train-steps N adds N episodes after it.
//   - The prototype build (plain means, centred, centred and normalised, or robust: normalised
//     embeddings, centred, shrunk toward genus and family, normalised), chosen by macro-F1 on
//     ValFrac of the TRAINING images of each class held out from training; the test set is never
//     looked at. The final prototypes then use every training image.
//
// # Output
//
//	OUT/config.yaml       every option and choice (reproduces the run with --config)
//	OUT/split.csv         the training images as trained on (fit), held out to choose the build (val)
//	                      and, with --holdout, held out to evaluate (holdout): path,class,split
//	OUT/runs/pretrain/    the pretraining run (package train's layout), OUT/runs/train/ the episodic one
//	OUT/prototypes.safetensors, OUT/submission.csv, OUT/topk.csv
//	OUT/report/           when labels exist for the predicted images: eval's report (summary,
//	                      per-class CSV, plots)
//
// Resume (Options.Resume) reads OUT/config.yaml and continues the interrupted training stage from
// its last checkpoint; the stages after training are quick and run again.
package pipeline

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"protoherb/atomicfile"
	"protoherb/proto"
)

// Config is a run's options and the choices made for it (zero = choose). The yaml keys are run's
// flag names where one exists.
type Config struct {
	Data    string        `yaml:"data"`
	Format  string        `yaml:"format,omitempty"`
	Budget  time.Duration `yaml:"budget"`
	Device  string        `yaml:"device"`
	Init    string        `yaml:"init,omitempty"`
	Holdout float64       `yaml:"holdout,omitempty"` // share of each class's training images held out for evaluation
	Seed    uint64        `yaml:"seed"`
	Threads int           `yaml:"threads,omitempty"`

	// Choices.
	Backbone      string  `yaml:"backbone"`
	ImageSize     int     `yaml:"image-size"`
	Resize        string  `yaml:"resize"`   // fit: whole image at its aspect, padded (default); crop: centre square
	TTA           string  `yaml:"tta"`      // flip: average each embedding with its mirror image's (default); none
	ValFrac       float64 `yaml:"val-frac"` // share of each class's training images held out to choose the build
	BatchSize     int     `yaml:"batch-size"`
	Way           int     `yaml:"way"`
	Shot          int     `yaml:"shot"`
	Query         int     `yaml:"query"`
	PretrainSteps int     `yaml:"pretrain-steps"` // -1: none
	TrainSteps    int     `yaml:"train-steps"`    // -1: none
	Prototypes    *Build  `yaml:"prototypes,omitempty"`

	// Measured: what the choices were based on (informative; not read back).
	Measured Measured `yaml:"measured"`
}

// Build is a prototype build as config.yaml records it.
type Build struct {
	Name                string  `yaml:"name"`
	NormalizeEmbeddings bool    `yaml:"normalize-embeddings"`
	Center              bool    `yaml:"center"`
	Normalize           bool    `yaml:"normalize"`
	ShrinkGenus         float64 `yaml:"shrink-genus"`
	ShrinkFamily        float64 `yaml:"shrink-family"`
	AutoShrink          bool    `yaml:"auto-shrink"`
	// ValMacroF1 is the macro-F1 of the build on the held-out training images, for each candidate.
	ValMacroF1 map[string]float64 `yaml:"val-macro-f1,omitempty"`
}

func (b Build) proto() (proto.Options, proto.Build) {
	return proto.Options{NormalizeEmbeddings: b.NormalizeEmbeddings},
		proto.Build{Center: b.Center, Normalize: b.Normalize, ShrinkGenus: b.ShrinkGenus, ShrinkFamily: b.ShrinkFamily, AutoShrink: b.AutoShrink}
}

// Measured records the timings a plan was made from.
type Measured struct {
	PretrainStepSeconds float64 `yaml:"pretrain-step-seconds,omitempty"`
	TrainStepSeconds    float64 `yaml:"train-step-seconds,omitempty"`
	EmbedImageSeconds   float64 `yaml:"embed-image-seconds,omitempty"` // estimated from a training image's time (embedFactor)
	Images              int     `yaml:"images,omitempty"`              // to embed: training and predicted images
}

// ReadConfig reads a config.yaml (unknown keys are an error naming them).
func ReadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("run config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && err != io.EOF {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Merge fills the zero fields of c from o (flags over a config file).
func (c *Config) Merge(o Config) {
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	seti := func(dst *int, v int) {
		if *dst == 0 {
			*dst = v
		}
	}
	set(&c.Data, o.Data)
	set(&c.Format, o.Format)
	set(&c.Device, o.Device)
	set(&c.Init, o.Init)
	set(&c.Backbone, o.Backbone)
	set(&c.Resize, o.Resize)
	set(&c.TTA, o.TTA)
	if c.Budget == 0 {
		c.Budget = o.Budget
	}
	if c.Holdout == 0 {
		c.Holdout = o.Holdout
	}
	if c.Seed == 0 {
		c.Seed = o.Seed
	}
	if c.ValFrac == 0 {
		c.ValFrac = o.ValFrac
	}
	for _, p := range []struct {
		dst *int
		v   int
	}{{&c.Threads, o.Threads}, {&c.ImageSize, o.ImageSize},
		{&c.BatchSize, o.BatchSize}, {&c.Way, o.Way}, {&c.Shot, o.Shot}, {&c.Query, o.Query},
		{&c.PretrainSteps, o.PretrainSteps}, {&c.TrainSteps, o.TrainSteps}} {
		seti(p.dst, p.v)
	}
	if c.Prototypes == nil {
		c.Prototypes = o.Prototypes
	}
}

func (c *Config) write(path string) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		fmt.Fprintln(w, "# protoherb run: every option and choice of this run; `protoherb run --config THIS --out DIR` repeats it")
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(c); err != nil {
			return err
		}
		return enc.Close()
	})
}
