// Package train runs protoherb's two training stages and its few-shot evaluation: softmax
// pretraining of a backbone on the most populated classes (Pretrain), episodic prototypical-network
// training over the long tail (Episodic), and N-way K-shot accuracy with a 95% confidence interval
// (FewShot). Runs are resumable exactly (weights, optimizer state, both random generators, step),
// stop cleanly on context cancellation with a checkpoint, and refuse to continue past a NaN loss.
//
// # Run directory
//
//	RUN_DIR/config.yaml       the effective configuration (flags over --config over defaults)
//	RUN_DIR/metrics.jsonl     one record per step (phase train) and per validation (phase val)
//	RUN_DIR/curves.png        loss and accuracy curves, redrawn at every checkpoint
//	RUN_DIR/ckpt-NNNNNNNNN/   the last KeepLast checkpoints (package checkpoint's layout)
//	RUN_DIR/best/             the checkpoint with the best validation accuracy
//	RUN_DIR/bad-images.tsv    the images that could not be loaded and were skipped (badimage.go)
package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"gopkg.in/yaml.v3"

	"protoherb/atomicfile"
	"protoherb/dataset"
	"protoherb/imageio"
)

// Modes of a run.
const (
	ModePretrain = "pretrain"
	ModeEpisodic = "train"
)

// Config is every option of a run. The yaml keys are the command-line flag names, so a --config
// file and the flags say the same thing; RUN_DIR/config.yaml holds the effective copy.
type Config struct {
	Mode   string `yaml:"mode" json:"mode"`
	RunDir string `yaml:"run-dir" json:"run_dir"`

	// Data.
	Data     string  `yaml:"data" json:"data"`
	Format   string  `yaml:"format" json:"format"`
	Split    string  `yaml:"split" json:"split"`
	ValSplit string  `yaml:"val-split" json:"val_split"` // a separate split for validation ("" = hold out ValFrac)
	ValFrac  float64 `yaml:"val-frac" json:"val_frac"`   // classes (train) or images (pretrain) held out
	// Image pipeline; 0/"" = chosen from the data (Omniglot: 28 px, 1 channel, inverted).
	ImageSize int    `yaml:"image-size" json:"image_size"`
	Channels  int    `yaml:"channels" json:"channels"`
	Invert    string `yaml:"invert" json:"invert"`   // auto | true | false
	Augment   bool   `yaml:"augment" json:"augment"` // random resized crop, flip, colour jitter
	// Fit keeps each image whole at its aspect (longer side to the image size, padded with its
	// border's colour) instead of the centre square; with Augment, a random zoom and shift instead of
	// the random resized crop. The model file records it, so embedding does the same.
	Fit bool `yaml:"fit" json:"fit"`
	// Squash resizes each whole image to the square, its aspect not kept (with Augment, the random
	// resized crop drawn in the squashed frame). The model file records it.
	Squash bool `yaml:"squash" json:"squash"`
	// FlipTTA embeds each image and its mirror image and averages the two (test-time augmentation),
	// in validation and wherever the model is loaded to embed.
	FlipTTA  bool   `yaml:"flip-tta" json:"flip_tta"`
	InMemory string `yaml:"in-memory" json:"in_memory"` // auto | true | false: decode every image once into RAM
	Workers  int    `yaml:"workers" json:"workers"`     // image decoding goroutines (0 = cores)

	// What an image that cannot be loaded does: skip (replaced by another of its class) or fail.
	OnBadImage string `yaml:"on-bad-image" json:"on_bad_image"`

	// Model.
	Backbone     string `yaml:"backbone" json:"backbone"`
	EmbedDim     int    `yaml:"embed-dim" json:"embed_dim"`
	L2Norm       bool   `yaml:"l2-norm" json:"l2_norm"`
	ChannelsLast bool   `yaml:"channels-last" json:"channels_last"`
	Init         string `yaml:"init" json:"init"` // weights to start from: a checkpoint folder, a run dir or a .safetensors file

	// Pretraining.
	TopClasses     int     `yaml:"top-classes" json:"top_classes"` // 0 = all classes
	Sampling       string  `yaml:"sampling" json:"sampling"`       // balanced | plain
	BatchSize      int     `yaml:"batch-size" json:"batch_size"`
	LabelSmoothing float64 `yaml:"label-smoothing" json:"label_smoothing"`
	Classifier     string  `yaml:"classifier" json:"classifier"` // linear | cosine

	// Episodes.
	Way       int    `yaml:"way" json:"way"`
	Shot      int    `yaml:"shot" json:"shot"`
	Query     int    `yaml:"query" json:"query"`
	TestWay   int    `yaml:"test-way" json:"test_way"`
	TestShot  int    `yaml:"test-shot" json:"test_shot"`
	TestQuery int    `yaml:"test-query" json:"test_query"`
	Distance  string `yaml:"distance" json:"distance"` // euclidean | cosine
	// EpisodesPerStep is how many episodes a step averages its loss over (split across the ranks of
	// a distributed run; a multiple of their number). 0 means 1.
	EpisodesPerStep int `yaml:"episodes-per-step" json:"episodes_per_step"`

	// Optimisation.
	Steps       int     `yaml:"steps" json:"steps"` // episodes (train) or batches (pretrain)
	Optimizer   string  `yaml:"optimizer" json:"optimizer"`
	LR          float64 `yaml:"lr" json:"lr"`
	MinLR       float64 `yaml:"min-lr" json:"min_lr"`
	WeightDecay float64 `yaml:"weight-decay" json:"weight_decay"`
	Momentum    float64 `yaml:"momentum" json:"momentum"`
	Schedule    string  `yaml:"schedule" json:"schedule"` // step | cosine | constant
	LRStep      int     `yaml:"lr-step" json:"lr_step"`
	LRGamma     float64 `yaml:"lr-gamma" json:"lr_gamma"`
	Warmup      int     `yaml:"warmup" json:"warmup"`

	// Bookkeeping.
	EvalEvery    int `yaml:"eval-every" json:"eval_every"`
	EvalEpisodes int `yaml:"eval-episodes" json:"eval_episodes"`
	SaveEvery    int `yaml:"save-every" json:"save_every"`
	KeepLast     int `yaml:"keep-last" json:"keep_last"`

	// Machine.
	Device  string `yaml:"device" json:"device"`
	Threads int    `yaml:"threads" json:"threads"`
	Seed    uint64 `yaml:"seed" json:"seed"`
}

// Defaults returns the defaults of a mode: for train, the prototypical-networks Omniglot recipe
// (60-way 5-shot 5-query, Adam 1e-3 halved every 2,000 episodes); for pretrain, SGD with a cosine
// schedule on class-balanced batches.
func Defaults(mode string) Config {
	c := Config{
		Mode: mode, Split: "train", ValFrac: 0.1, Invert: "auto", InMemory: "auto", OnBadImage: "skip",
		Backbone: "conv4", Way: 60, Shot: 5, Query: 5, EpisodesPerStep: 1, TestWay: 5, TestShot: 5, TestQuery: 15,
		Distance: "euclidean", EvalEvery: 500, EvalEpisodes: 200, SaveEvery: 500, KeepLast: 3,
		Device: "cpu", Seed: 1, Threads: runtime.NumCPU(),
	}
	switch mode {
	case ModePretrain:
		c.Sampling, c.BatchSize, c.Classifier = "balanced", 64, "linear"
		c.Steps, c.Optimizer, c.LR, c.MinLR, c.WeightDecay, c.Momentum = 10000, "sgd", 0.1, 0, 5e-4, 0.9
		c.Schedule, c.Warmup, c.LabelSmoothing, c.Augment, c.ValFrac = "cosine", 500, 0.1, true, 0.05
		c.LRGamma = 0.5
	default:
		c.Steps, c.Optimizer, c.LR, c.Schedule, c.LRStep, c.LRGamma = 20000, "adam", 1e-3, "step", 2000, 0.5
	}
	return c
}

// Validate checks the options and fills the ones chosen from the data.
func (c *Config) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if c.Mode != ModePretrain && c.Mode != ModeEpisodic {
		bad("mode %q: want pretrain or train", c.Mode)
	}
	if c.Data == "" {
		bad("data: no dataset given (--data)")
	}
	if c.RunDir == "" {
		bad("run-dir: no run directory given (--run-dir)")
	}
	if c.Steps < 1 {
		bad("steps must be at least 1, got %d", c.Steps)
	}
	if c.Mode == ModeEpisodic {
		c.validateEpisodes(bad)
	}
	if c.TestWay < 2 || c.TestShot < 1 || c.TestQuery < 1 {
		bad("validation episodes need test-way >= 2, test-shot >= 1, test-query >= 1")
	}
	if c.Mode == ModePretrain {
		c.validatePretrain(bad)
	}
	switch c.Optimizer {
	case "sgd", "adam", "adamw":
	default:
		bad("optimizer %q: want sgd, adam or adamw", c.Optimizer)
	}
	switch c.Schedule {
	case "step", "cosine", "constant":
	default:
		bad("schedule %q: want step, cosine or constant", c.Schedule)
	}
	if c.LR <= 0 {
		bad("lr must be positive, got %v", c.LR)
	}
	if c.ValFrac < 0 || c.ValFrac >= 1 {
		bad("val-frac must be in [0, 1), got %v", c.ValFrac)
	}
	for _, s := range []struct {
		name, v string
	}{{"invert", c.Invert}, {"in-memory", c.InMemory}} {
		if s.v != "auto" && s.v != "true" && s.v != "false" {
			bad("%s %q: want auto, true or false", s.name, s.v)
		}
	}
	if _, err := imageio.ParseBadPolicy(c.OnBadImage); err != nil {
		bad("on-bad-image %q: want skip or fail", c.OnBadImage)
	}
	if c.Fit && c.Squash {
		bad("fit and squash are exclusive: each is a way to make an image square (keep its aspect and pad, or stretch it)")
	}
	if c.ImageSize < 0 || (c.Channels != 0 && c.Channels != 1 && c.Channels != 3) {
		bad("image-size must be >= 0 and channels 1 or 3 (got %d, %d)", c.ImageSize, c.Channels)
	}
	if c.EvalEvery < 0 || c.EvalEpisodes < 0 || c.SaveEvery < 0 {
		bad("eval-every, eval-episodes and save-every must be >= 0")
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// validateEpisodes checks the episodic mode's options (filling episodes-per-step), reporting to bad.
func (c *Config) validateEpisodes(bad func(string, ...any)) {
	if c.Way < 2 || c.Shot < 1 || c.Query < 1 {
		bad("episodes need way >= 2, shot >= 1, query >= 1 (got %d-way %d-shot %d-query)", c.Way, c.Shot, c.Query)
	}
	if c.EpisodesPerStep == 0 {
		c.EpisodesPerStep = 1
	}
	if c.EpisodesPerStep < 1 {
		bad("episodes-per-step must be at least 1, got %d", c.EpisodesPerStep)
	}
	if c.Distance != "euclidean" && c.Distance != "cosine" {
		bad("distance %q: want euclidean or cosine", c.Distance)
	}
}

// validatePretrain checks the classifier pretraining's options, reporting to bad.
func (c *Config) validatePretrain(bad func(string, ...any)) {
	if c.BatchSize < 1 {
		bad("batch-size must be positive, got %d", c.BatchSize)
	}
	if c.Sampling != "balanced" && c.Sampling != "plain" {
		bad("sampling %q: want balanced or plain", c.Sampling)
	}
	if c.LabelSmoothing < 0 || c.LabelSmoothing >= 1 {
		bad("label-smoothing must be in [0, 1), got %v", c.LabelSmoothing)
	}
	if c.TopClasses < 0 {
		bad("top-classes must be >= 0, got %d", c.TopClasses)
	}
}

// omniglot reports whether the run's data is Omniglot (by format, or detected).
func (c *Config) omniglot() bool {
	if c.Format != "" {
		return strings.EqualFold(c.Format, dataset.FormatOmniglot)
	}
	f, err := dataset.Detect(c.Data)
	return err == nil && f == dataset.FormatOmniglot
}

// resolveImage fills ImageSize, Channels and Invert from the data when they are left to auto:
// Omniglot is 28×28, one channel, inverted (strokes as ones), as in the prototypical-networks code;
// anything else 84×84 RGB.
func (c *Config) resolveImage() {
	omni := c.omniglot()
	if c.ImageSize == 0 {
		c.ImageSize = 84
		if omni {
			c.ImageSize = 28
		}
	}
	if c.Channels == 0 {
		c.Channels = 3
		if omni {
			c.Channels = 1
		}
	}
	if c.Invert == "auto" {
		c.Invert = fmt.Sprint(omni)
	}
}

// ReadConfig reads a YAML config file over base (keys are flag names; an unknown key is an error).
func ReadConfig(path string, base Config) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return base, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&base); err != nil && err != io.EOF {
		return base, fmt.Errorf("config %s: %w", path, err)
	}
	return base, nil
}

// WriteConfig writes c as YAML to path, atomically.
func WriteConfig(path string, c Config) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error { _, err := w.Write(b); return err })
}

// ConfigPath is the effective config of a run.
func ConfigPath(runDir string) string { return filepath.Join(runDir, "config.yaml") }

func (c Config) json() json.RawMessage {
	b, _ := json.Marshal(c)
	return b
}
