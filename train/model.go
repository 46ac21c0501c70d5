package train

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"protoherb/checkpoint"
	"protoherb/nn"
	"protoherb/torch"
)

// ScaleName is the checkpoint name of the cosine metric's learned temperature.
const ScaleName = "metric.scale"

// Metric scores query embeddings against class prototypes.
type Metric struct {
	// Distance is euclidean (logits = −squared distance) or cosine (logits = scale · cosine).
	Distance string
	// Scale is the learned temperature of the cosine metric ([1], trainable); nil for euclidean.
	Scale *torch.Tensor
}

// newMetric returns the metric of a distance; cosine's temperature starts at 10.
func newMetric(distance string, dev torch.Device) (*Metric, error) {
	m := &Metric{Distance: distance}
	if distance == "cosine" {
		m.Scale = torch.Full(nil, 10, torch.Float32, dev, 1).SetRequiresGrad(true)
		if err := m.Scale.Err(); err != nil {
			return nil, fmt.Errorf("metric scale: %w", err)
		}
	}
	return m, nil
}

// Params lists the metric's trainable tensors by checkpoint name.
func (m *Metric) Params() []nn.Param {
	if m == nil || m.Scale == nil {
		return nil
	}
	return []nn.Param{{Name: ScaleName, T: m.Scale}}
}

// Logits returns [Q, N] scores of queries q [Q,D] against prototypes [N,D]: −‖q−p‖² or
// scale·cos(q, p). Cross-entropy over them is the prototypical-networks loss, applied once.
func (m *Metric) Logits(q, protos *torch.Tensor) *torch.Tensor {
	if m.Distance == "cosine" {
		return torch.PairwiseCosine(q, protos, 1e-8).Mul(m.Scale)
	}
	return torch.SquaredDistances(q, protos).Neg()
}

// Close frees the metric's tensors.
func (m *Metric) Close() {
	if m != nil && m.Scale != nil {
		m.Scale.Free()
	}
}

// Prototypes returns the class means [way, D] of class-major support embeddings [way·shot, D].
func Prototypes(support *torch.Tensor, way, shot int) *torch.Tensor {
	d := support.Size(1)
	return support.Reshape(int64(way), int64(shot), d).Mean(false, 1)
}

// modelConfig is the nn.Config of a run's model.
func modelConfig(c *Config, numClasses int, dev torch.Device) nn.Config {
	return nn.Config{Backbone: c.Backbone, InChannels: c.Channels, ImageSize: c.ImageSize, EmbedDim: c.EmbedDim,
		L2Norm: c.L2Norm, NumClasses: numClasses, Classifier: c.Classifier, Device: dev, ChannelsLast: c.ChannelsLast}
}

// weightsFile resolves --init or --model: a .safetensors file, a checkpoint folder, or a run
// directory (its best checkpoint, else its latest).
func resolveCheckpoint(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("weights: %w", err)
	}
	if !st.IsDir() {
		return path, nil
	}
	if _, err := os.Stat(filepath.Join(path, checkpoint.ModelFile)); err == nil {
		return path, nil
	}
	if _, err := os.Stat(filepath.Join(path, checkpoint.BestName, checkpoint.ModelFile)); err == nil {
		return filepath.Join(path, checkpoint.BestName), nil
	}
	steps, _ := checkpoint.Steps(path)
	if len(steps) > 0 {
		return filepath.Join(path, checkpoint.Name(steps[0])), nil
	}
	return "", fmt.Errorf("%s: neither a checkpoint folder (no %s) nor a run directory with checkpoints", path, checkpoint.ModelFile)
}

// loadInit fills the model (backbone and embedding head; classifier heads are skipped) from --init.
func loadInit(m *nn.Model, path string) error {
	p, err := resolveCheckpoint(path)
	if err != nil {
		return fmt.Errorf("--init: %w", err)
	}
	file := p
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		file = filepath.Join(p, checkpoint.ModelFile)
	}
	var dst []nn.Param
	for _, q := range m.State() {
		if len(q.Name) >= 3 && q.Name[:3] == "fc." {
			continue
		}
		dst = append(dst, q)
	}
	ts, _, err := nn.ReadWeights(file)
	if err != nil {
		return fmt.Errorf("--init: %w", err)
	}
	defer nn.FreeTensors(ts)
	rep, err := nn.LoadInto(dst, ts, false)
	if err != nil {
		return fmt.Errorf("--init %s: %w", file, err)
	}
	if len(rep.Loaded) == 0 {
		return fmt.Errorf("--init %s: no tensor matches the model (%s)", file, rep)
	}
	if len(rep.Missing) > 0 {
		slog.Warn("train: --init left some tensors at their fresh values", "file", file, "report", rep.String())
	}
	slog.Info("train: initialised from", "file", file, "loaded", len(rep.Loaded))
	return nil
}

var errNonFinite = errors.New("non-finite loss")
