// Package nn holds protoherb's networks: the backbones (Conv-4, ResNet-12, torchvision's ResNet-18
// and ResNet-50, TorchScript modules), the embedding and classifier heads, and their weights in
// safetensors files with PyTorch's parameter names.
//
// # Names
//
// Every tensor is named as PyTorch's state_dict would name it, so weights move between protoherb and
// Python without renaming:
//
//   - conv4: encoder.{0..3}.0.{weight,bias} (conv), encoder.{0..3}.1.{weight,bias,running_mean,
//     running_var,num_batches_tracked} (batch norm), as the reference protonet code's nn.Sequential.
//   - resnet18, resnet50: torchvision's names (conv1.weight, bn1.running_mean, layer1.0.conv1.weight,
//     layer2.0.downsample.0.weight, ...).
//   - resnet12: layer{1..4}.0.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}.*
//   - torchscript:PATH: the module's own named_parameters / named_buffers.
//   - heads: embed.{weight,bias} (the optional linear embedding), fc.{weight,bias} (linear classifier,
//     torchvision's name, so a torchvision ResNet state dict with its 1000-class fc loads whole) or
//     fc.{weight,scale} (cosine classifier).
//
// # Memory
//
// Forward passes follow package torch's rule: results belong to the scope of the input. Run them
// inside a torch.Scope (Reset per step); intermediates that no scope owns are freed as they go.
package nn

import (
	"fmt"
	"strings"

	"protoherb/torch"
)

// Param is a named tensor: a parameter or a buffer, named as in PyTorch's state_dict.
type Param struct {
	Name string
	T    *torch.Tensor
}

// Module is a network piece with PyTorch-named tensors.
type Module interface {
	// Forward maps x (NCHW float32) to the module's output; train switches batch-norm statistics
	// and dropout.
	Forward(x *torch.Tensor, train bool) *torch.Tensor
	// Parameters lists the trainable tensors in a stable (state_dict) order.
	Parameters() []Param
	// Buffers lists batch-norm running statistics and num_batches_tracked (int64).
	Buffers() []Param
}

// Backbone is a Module that maps images to flat features.
type Backbone interface {
	Module
	// OutDim is the feature size D of Forward's [N, D] output.
	OutDim() int
}

// Backbones lists the accepted Config.Backbone values, for flag help.
var Backbones = []string{"conv4", "resnet12", "resnet18", "resnet50", "torchscript:PATH"}

// Config selects and sizes a Model.
type Config struct {
	Backbone   string // conv4 | resnet12 | resnet18 | resnet50 | torchscript:PATH
	InChannels int    // 1 or 3 (0 means 3)
	ImageSize  int    // input height = width; needed by conv4 (feature size) and torchscript (probe)
	EmbedDim   int    // size of the linear embedding head; 0 = none (embedding = backbone features)
	L2Norm     bool   // L2-normalise embeddings
	NumClasses int    // classifier outputs; 0 = no classifier
	Classifier string // linear (default) | cosine
	Device     torch.Device
	// ChannelsLast runs the built-in backbones' convolutions on NHWC memory layout.
	ChannelsLast bool
}

// Model is a backbone with an optional embedding head and an optional classifier head.
type Model struct {
	Config    Config
	Backbone  Backbone
	Embedding *Linear           // nil without EmbedDim
	Linear    *Linear           // classifier when Classifier is linear
	Cosine    *CosineClassifier // classifier when Classifier is cosine
	script    *Script
}

// backboneState adapts a Backbone to the visitor walk.
func backboneState(b Backbone) stateful {
	if s, ok := b.(stateful); ok {
		return s
	}
	return nil
}

// New builds a model with fresh weights initialised as PyTorch would, drawn from libtorch's
// generator (seed it with torch.ManualSeed for reproducible weights).
func New(cfg Config) (*Model, error) {
	if cfg.InChannels == 0 {
		cfg.InChannels = 3
	}
	if cfg.InChannels < 1 {
		return nil, fmt.Errorf("nn: %d input channels", cfg.InChannels)
	}
	if cfg.Classifier == "" {
		cfg.Classifier = "linear"
	}
	if cfg.Classifier != "linear" && cfg.Classifier != "cosine" {
		return nil, fmt.Errorf("nn: classifier %q: want linear or cosine", cfg.Classifier)
	}
	if cfg.EmbedDim < 0 || cfg.NumClasses < 0 {
		return nil, fmt.Errorf("nn: negative embed dim %d or class count %d", cfg.EmbedDim, cfg.NumClasses)
	}
	dev := cfg.Device
	m := &Model{Config: cfg}
	switch name := cfg.Backbone; {
	case name == "conv4":
		if cfg.ImageSize < 16 {
			return nil, fmt.Errorf("nn: conv4 needs an image size of at least 16 (got %d)", cfg.ImageSize)
		}
		c := NewConv4(dev, cfg.InChannels, cfg.ImageSize)
		c.ChannelsLast = cfg.ChannelsLast
		m.Backbone = c
	case name == "resnet12":
		r := NewResNet12(dev, cfg.InChannels)
		r.ChannelsLast = cfg.ChannelsLast
		m.Backbone = r
	case name == "resnet18" || name == "resnet50":
		depth := 18
		if name == "resnet50" {
			depth = 50
		}
		r := NewResNet(dev, depth, cfg.InChannels)
		r.ChannelsLast = cfg.ChannelsLast
		m.Backbone = r
	case strings.HasPrefix(name, "torchscript:"):
		s, err := NewScript(strings.TrimPrefix(name, "torchscript:"), dev, cfg.InChannels, cfg.ImageSize)
		if err != nil {
			return nil, fmt.Errorf("nn: backbone %s: %w", name, err)
		}
		m.Backbone, m.script = s, s
	default:
		return nil, fmt.Errorf("nn: unknown backbone %q (want conv4, resnet12, resnet18, resnet50 or torchscript:PATH)", name)
	}
	d := int64(m.Backbone.OutDim())
	if d <= 0 {
		return nil, fmt.Errorf("nn: backbone %s gives no features at image size %d", cfg.Backbone, cfg.ImageSize)
	}
	if cfg.EmbedDim > 0 {
		m.Embedding = NewLinear(dev, d, int64(cfg.EmbedDim), true)
		d = int64(cfg.EmbedDim)
	}
	if cfg.NumClasses > 0 {
		if cfg.Classifier == "cosine" {
			m.Cosine = NewCosineClassifier(dev, d, int64(cfg.NumClasses))
		} else {
			m.Linear = NewLinear(dev, d, int64(cfg.NumClasses), true)
		}
	}
	if err := firstErr(m); err != nil {
		m.Close()
		return nil, fmt.Errorf("nn: %s: %w", cfg.Backbone, err)
	}
	return m, nil
}

func (m *Model) visit(p string, v visitor) {
	if s := backboneState(m.Backbone); s != nil {
		s.visit(p, v)
	}
	if m.Embedding != nil {
		m.Embedding.visit(p+"embed.", v)
	}
	if m.Linear != nil {
		m.Linear.visit(p+"fc.", v)
	}
	if m.Cosine != nil {
		m.Cosine.visit(p+"fc.", v)
	}
}

// EmbedDim returns the size of Embed's output.
func (m *Model) EmbedDim() int {
	if m.Embedding != nil {
		return m.Config.EmbedDim
	}
	return m.Backbone.OutDim()
}

// Embed maps images x [N,C,H,W] to embeddings [N, EmbedDim] (backbone, embedding head, L2 norm).
func (m *Model) Embed(x *torch.Tensor, train bool) *torch.Tensor {
	h := m.Backbone.Forward(x, train)
	if m.Embedding != nil {
		h = next(h, x, m.Embedding.Forward(h))
	}
	if m.Config.L2Norm {
		h = next(h, x, torch.Normalize(h, 2, 1, 1e-12))
	}
	return h
}

// Forward is Embed, so a Model is itself a Module.
func (m *Model) Forward(x *torch.Tensor, train bool) *torch.Tensor { return m.Embed(x, train) }

// Classify maps embeddings [N, EmbedDim] to classifier logits [N, NumClasses].
func (m *Model) Classify(emb *torch.Tensor) *torch.Tensor {
	switch {
	case m.Linear != nil:
		return m.Linear.Forward(emb)
	case m.Cosine != nil:
		return m.Cosine.Forward(emb)
	}
	return torch.Errorf("classify", "model has no classifier (NumClasses is 0)")
}

// Logits maps images to classifier logits [N, NumClasses] (for pretraining).
func (m *Model) Logits(x *torch.Tensor, train bool) *torch.Tensor {
	if m.Linear == nil && m.Cosine == nil {
		return torch.Errorf("logits", "model has no classifier (NumClasses is 0)")
	}
	e := m.Embed(x, train)
	return next(e, x, m.Classify(e))
}

// Parameters lists the trainable tensors in state_dict order.
func (m *Model) Parameters() []Param { return collect(m, true, false) }

// Buffers lists the non-trainable state (batch-norm statistics) in state_dict order.
func (m *Model) Buffers() []Param { return collect(m, false, true) }

// State lists parameters and buffers together in state_dict order: what a checkpoint saves.
func (m *Model) State() []Param { return collect(m, true, true) }

// BackboneState lists the backbone's parameters and buffers only (no heads).
func (m *Model) BackboneState() []Param {
	if s := backboneState(m.Backbone); s != nil {
		return collect(s, true, true)
	}
	return nil
}

// Tensors returns the parameter tensors, for an optimizer.
func Tensors(ps []Param) []*torch.Tensor {
	out := make([]*torch.Tensor, len(ps))
	for i, p := range ps {
		out[i] = p.T
	}
	return out
}

// NumParams counts the elements of ps.
func NumParams(ps []Param) int64 {
	var n int64
	for _, p := range ps {
		n += p.T.Numel()
	}
	return n
}

// Close frees every tensor of the model (and a TorchScript backbone). The model is unusable after.
func (m *Model) Close() {
	m.unfold()
	if m.script != nil {
		m.script.Close()
		m.script = nil
	} else if s := backboneState(m.Backbone); s != nil {
		s.visit("", func(_ string, t *torch.Tensor, _ bool) { t.Free() })
	}
	for _, h := range []stateful{m.Embedding, m.Linear, m.Cosine} {
		if h != nil && !isNil(h) {
			h.visit("", func(_ string, t *torch.Tensor, _ bool) { t.Free() })
		}
	}
}

// isNil reports whether a head interface holds a nil pointer.
func isNil(s stateful) bool {
	switch h := s.(type) {
	case *Linear:
		return h == nil
	case *CosineClassifier:
		return h == nil
	}
	return s == nil
}
