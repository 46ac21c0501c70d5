package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"protoherb/nn"
	"protoherb/torch"
	"protoherb/train"
)

// Plan constants.
const (
	calibrationSteps = 10   // pretraining steps timed to plan the budget (the median after the first two)
	budgetMargin     = 0.08 // of the budget, kept for the unexpected
	// embedFactor: embedding an image costs about this share of a pretraining image's step time.
	// The forward pass alone is about a third, but decoding the image, which a training step also
	// pays, is the same: on leaf99 at 84 px (Conv-4, 2 loaded cores) 1/3 underestimated the
	// embedding stage fourfold and a 3-minute run overran by 12 s.
	embedFactor = 1.0
	// flipFactor: flip TTA runs the forward pass twice; decoding, a third of a step, once.
	flipFactor = 4.0 / 3
)

// chooseModel fills the backbone and image size: the --init file's backbone when there is one,
// else by device and budget. On a CPU, Conv-4 at 84 px (the few-shot literature's size) fits a
// budget of minutes; ResNet-12 at 84 px needs hours to beat it. On a GPU, ResNet-18 at 224 px.
func chooseModel(c *Config, dev torch.Device) error {
	if c.Init != "" && c.Backbone == "" {
		b, err := initBackbone(c.Init)
		if err != nil {
			return err
		}
		c.Backbone = b
	}
	gpu := dev != torch.CPU
	if c.Backbone == "" {
		switch {
		case gpu:
			c.Backbone = "resnet18"
		case c.Budget >= 2*time.Hour:
			c.Backbone = "resnet12"
		default:
			c.Backbone = "conv4"
		}
	}
	if c.ImageSize == 0 {
		c.ImageSize = 84
		if strings.HasPrefix(c.Backbone, "resnet") && c.Backbone != "resnet12" {
			c.ImageSize = 224
			if !gpu && c.Budget < 2*time.Hour {
				c.ImageSize = 128 // ImageNet features hold up at half size, at a quarter of the cost
			}
		}
	}
	return nil
}

// initBackbone tells the backbone of a weights file (a run, checkpoint or weights file) by its
// tensor names.
func initBackbone(path string) (string, error) {
	file := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return "", fmt.Errorf("--init %s: a run or checkpoint folder: give --backbone (its run's config.yaml says it)", path)
	}
	ts, _, err := nn.ReadWeights(file)
	if err != nil {
		return "", fmt.Errorf("--init: %w", err)
	}
	defer nn.FreeTensors(ts)
	has := func(n string) bool { _, ok := ts[n]; return ok }
	switch {
	case has("conv1.weight") && has("layer4.2.conv3.weight"):
		return "resnet50", nil
	case has("conv1.weight") && has("layer4.1.conv2.weight"):
		return "resnet18", nil
	case has("layer4.0.conv3.weight"):
		return "resnet12", nil
	case has("encoder.0.0.weight"):
		return "conv4", nil
	}
	return "", fmt.Errorf("--init %s: cannot tell its backbone from its tensor names: give --backbone", path)
}

// stageConfig is the train.Config of a stage (steps as given).
func stageConfig(c *Config, out, mode string, steps int) train.Config {
	tc := train.Defaults(mode)
	tc.Data, tc.Format, tc.Split = filepath.Join(out, "split.csv"), "csv", splitFit
	tc.ValFrac, tc.EvalEvery = 0, 0 // the build choice is the validation that matters here
	tc.Backbone, tc.ImageSize, tc.Channels = c.Backbone, c.ImageSize, 3
	tc.ChannelsLast, tc.Augment, tc.Device, tc.Threads, tc.Seed = true, true, c.Device, c.Threads, c.Seed
	tc.Fit, tc.Squash, tc.FlipTTA = c.Resize == "fit", c.Resize == "squash", c.TTA == "flip"
	tc.Steps, tc.SaveEvery, tc.KeepLast = steps, max(steps/4, 1), 1
	if mode == train.ModePretrain {
		tc.RunDir, tc.TopClasses, tc.BatchSize, tc.Init = filepath.Join(out, "runs", "pretrain"), 0, c.BatchSize, c.Init
		tc.LR, tc.Warmup = 0.05, steps/20
	} else {
		tc.RunDir, tc.Way, tc.Shot, tc.Query = filepath.Join(out, "runs", "train"), c.Way, c.Shot, c.Query
		tc.LR, tc.Schedule, tc.MinLR = 5e-4, "cosine", 0
	}
	return tc
}

// calibrate times a few steps of a stage in a scratch run and returns the seconds per step.
func calibrate(ctx context.Context, c *Config, out, mode string, opt Options) (float64, error) {
	tc := stageConfig(c, out, mode, calibrationSteps)
	tc.RunDir = filepath.Join(out, "calibrate-"+mode)
	if mode == train.ModeEpisodic {
		tc.Init = ""
	}
	defer os.RemoveAll(tc.RunDir)
	if err := os.RemoveAll(tc.RunDir); err != nil {
		return 0, err
	}
	r, err := train.Run(ctx, tc, train.Options{Bar: opt.Bar})
	if err != nil {
		return 0, fmt.Errorf("calibrating %s: %w", mode, err)
	}
	return medianAfter(r.StepSeconds, 2), nil
}

// medianAfter is the median of xs past the first skip (their warm-up), or of all when too few.
func medianAfter(xs []float64, skip int) float64 {
	if len(xs) > skip {
		xs = xs[skip:]
	}
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// fitSteps gives pretraining what is left of the budget after the embedding of every image and
// the episodes asked for (their step time estimated from a pretraining image's: an episode is
// way×(shot+query) images, and the distances cost little beside the backbone).
func fitSteps(c *Config, elapsed time.Duration, images int) {
	m := &c.Measured
	m.Images = images
	perImage := m.PretrainStepSeconds / float64(max(c.BatchSize, 1))
	m.EmbedImageSeconds = perImage * embedFactor
	if c.TTA == "flip" {
		m.EmbedImageSeconds *= flipFactor
	}
	left := c.Budget.Seconds()*(1-budgetMargin) - elapsed.Seconds() - m.EmbedImageSeconds*float64(images)
	if c.TrainSteps > 0 {
		m.TrainStepSeconds = perImage * float64(c.Way*(c.Shot+c.Query))
		left -= m.TrainStepSeconds * float64(c.TrainSteps)
	}
	c.PretrainSteps = max(int(max(left, 0)/max(m.PretrainStepSeconds, 1e-3)), 1)
}

// chooseEpisodes fills the episode shape from the fit images: 2-shot 2-query (the long tail has
// few images per class), as many ways as classes allow, at most 20. Without two classes of four
// images, episodic training is skipped.
func chooseEpisodes(c *Config, d *data) {
	if c.Shot == 0 {
		c.Shot = 2
	}
	if c.Query == 0 {
		c.Query = 2
	}
	if c.Way == 0 {
		c.Way = min(20, eligibleClasses(d.fit, c.Shot+c.Query))
	}
	if c.Way < 2 && c.TrainSteps == 0 {
		c.TrainSteps = -1
	}
	if c.BatchSize == 0 {
		c.BatchSize = 64
	}
}
