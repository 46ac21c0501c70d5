// Package infer loads a trained model for inference and turns images into embeddings: the model
// spec read from a checkpoint's run config, a concurrency-safe embedder, and whole-dataset embedding.
package infer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"protoherb/checkpoint"
	"protoherb/imageio"
	"protoherb/nn"
	"protoherb/torch"
)

// Embedder maps preprocessed images to embeddings. Implementations are safe for concurrent use
// (calls may be serialised inside).
type Embedder interface {
	// Embed maps n images (n × C × S × S float32, the layout of Transform) to n × Dim embeddings.
	Embed(x []float32, n int) ([]float32, error)
	// Dim is the embedding size.
	Dim() int
	// Transform is the preprocessing the model expects.
	Transform() imageio.Transform
}

// ModelSpec describes the network behind a checkpoint. Zero fields are read from the checkpoint's
// run config (see LoadModel).
type ModelSpec struct {
	Backbone  string
	ImageSize int
	Channels  int
	EmbedDim  int
	L2Norm    *bool
	// Resize is the shorter side before the centre crop (0 = the image size: the largest centred
	// square).
	Resize int
	Device torch.Device
	// ChannelsLast runs the convolutions on NHWC memory (same results; about 2× faster for Conv-4
	// on CPU here).
	ChannelsLast bool
	// Invert maps pixel v to 1−v before normalising (a model trained on inverted strokes, as
	// train's invert: true).
	Invert bool
	// Mean and Std normalise each input channel (nil: ImageNet's for 3 channels, none for 1).
	Mean, Std []float32
	// Fit: the whole image at its aspect, padded (imageio.Transform.Fit; train's fit).
	Fit bool
	// Squash: the whole image stretched to the square (imageio.Transform.Squash; train's squash).
	Squash bool
	// FlipTTA averages the embeddings of each image and its mirror image (train's flip-tta).
	FlipTTA bool
	// Chunk is the most images per libtorch forward call (0 = the whole batch; negative = auto: 4
	// for Conv-4 on CPU, else the whole batch). On CPU a few images
	// at a time keep the activations in cache: Conv-4 at 84 px costs ~2 ms per image in chunks of
	// 4 but ~5 ms in one call of 32.
	Chunk int
}

// ModelEmbedder runs an nn.Model in inference mode, one forward pass at a time.
type ModelEmbedder struct {
	mu    sync.Mutex
	model *nn.Model
	tf    imageio.Transform
	dev   torch.Device
	// Chunk is the most images per forward call (0 = all at once).
	Chunk int
	// FlipTTA averages each image's embedding with its mirror image's (test-time augmentation).
	FlipTTA bool
}

// NewModelEmbedder wraps a built model; the caller keeps ownership of m (Close it after the
// embedder is no longer used).
func NewModelEmbedder(m *nn.Model, tf imageio.Transform) *ModelEmbedder {
	return &ModelEmbedder{model: m, tf: tf, dev: m.Config.Device}
}

// Dim is the embedding size.
func (e *ModelEmbedder) Dim() int { return e.model.EmbedDim() }

// Transform is the preprocessing the model expects.
func (e *ModelEmbedder) Transform() imageio.Transform { return e.tf }

// Close frees the model.
func (e *ModelEmbedder) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.model != nil {
		e.model.Close()
		e.model = nil
	}
}

// Embed runs one forward pass over the n images.
func (e *ModelEmbedder) Embed(x []float32, n int) ([]float32, error) {
	c := max(e.tf.Channels, 1)
	if e.tf.Channels == 0 {
		c = 3
	}
	s := e.tf.Size
	if n <= 0 || len(x) != n*c*s*s {
		return nil, fmt.Errorf("embed: %d values for %d images of %d×%d×%d", len(x), n, c, s, s)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.model == nil {
		return nil, errors.New("embed: model closed")
	}
	chunk := e.Chunk
	if chunk <= 0 {
		chunk = n
	}
	per := c * s * s
	out := make([]float32, 0, n*e.model.EmbedDim())
	var err error
	torch.NoGrad(func() {
		sc := torch.NewScope()
		defer sc.Close()
		for i := 0; i < n && err == nil; i += chunk {
			m := min(chunk, n-i)
			var v []float32
			v, err = e.forward(sc, x[i*per:(i+m)*per], m, c, s)
			if err == nil && e.FlipTTA {
				var f []float32
				if f, err = e.forward(sc, mirror(x[i*per:(i+m)*per], s), m, c, s); err == nil {
					for k := range v {
						v[k] = (v[k] + f[k]) / 2
					}
				}
			}
			out = append(out, v...)
			sc.Reset()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("embed %d images: %w", n, err)
	}
	return out, nil
}

// forward embeds m images of c×s×s.
func (e *ModelEmbedder) forward(sc *torch.Scope, x []float32, m, c, s int) ([]float32, error) {
	in := torch.FromFloat32On(sc, e.dev, x, int64(m), int64(c), int64(s), int64(s))
	return e.model.Embed(in, false).Float32s()
}

// mirror returns images (…×s×s planes) flipped left to right.
func mirror(x []float32, s int) []float32 {
	out := make([]float32, len(x))
	for r := 0; r < len(x); r += s {
		for j := 0; j < s; j++ {
			out[r+j] = x[r+s-1-j]
		}
	}
	return out
}

// LoadModel loads a trained model for inference. path is a checkpoint folder (with state.json),
// a run folder (its best checkpoint, else its latest), a weights file (safetensors, or a state
// dict as PyTorch's torch.save writes it, .pth/.pt: nn.ReadWeights; the file's "config" metadata, as
// checkpoints write it, or spec says the backbone and image size) or a TorchScript module
// (torch.jit.save: spec says the image size and channels). Weights load strictly: see nn.LoadTrained
// for what may be left out.
//
// The architecture comes from spec where set, else from the checkpoint's run config, read
// leniently: keys backbone (or model), image_size (or size), in_channels (or channels),
// embed_dim, l2_norm, invert, resize, fit, squash and flip_tta (package train's names), at the top level or inside a
// "model" object.
func LoadModel(path string, spec ModelSpec) (*ModelEmbedder, error) {
	src, err := openWeights(path)
	if err != nil {
		return nil, err
	}
	defer src.free()
	if src.torchScript && spec.Backbone == "" {
		// A TorchScript module is a whole model, its weights inside: no training run needed.
		spec.Backbone = "torchscript:" + path
	}
	if err := spec.fill(src.config); err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if spec.Backbone == "" || spec.ImageSize <= 0 {
		return nil, fmt.Errorf("model %s: the backbone and image size are not in its config; pass them (--backbone, --image-size)", path)
	}
	m, err := spec.build(path, src.weights)
	if err != nil {
		return nil, err
	}
	// nn.New has filled in the channel count (3 when spec left it 0).
	tf := imageio.Transform{Size: spec.ImageSize, Resize: spec.Resize, Channels: m.Config.InChannels, Invert: spec.Invert,
		Mean: spec.Mean, Std: spec.Std, Fit: spec.Fit, Squash: spec.Squash}
	e := NewModelEmbedder(m, tf)
	e.Chunk, e.FlipTTA = spec.chunk(), spec.FlipTTA
	return e, nil
}

// weightSource is what a model path holds: its weights (none for a TorchScript module, which
// keeps its own) and the run config recorded with them, if any.
type weightSource struct {
	weights     map[string]*torch.Tensor
	config      json.RawMessage
	torchScript bool
	free        func()
}

// openWeights reads the weights and config at path: a TorchScript module, a checkpoint or run
// folder, or a weights file.
func openWeights(path string) (weightSource, error) {
	src := weightSource{free: func() {}}
	st, err := os.Stat(path)
	if err != nil {
		return src, fmt.Errorf("model: %w", err)
	}
	switch {
	case isTorchScript(path):
		src.torchScript = true
	case st.IsDir():
		ck, err := loadCheckpoint(path)
		if err != nil {
			return src, err
		}
		src.weights, src.config, src.free = ck.WeightMap(), ck.Config, ck.Free
	default:
		w, meta, err := nn.ReadWeights(path)
		if err != nil {
			return src, fmt.Errorf("model: %w", err)
		}
		src.weights, src.free = w, func() { nn.FreeTensors(w) }
		if c := meta["config"]; c != "" {
			src.config = json.RawMessage(c)
		}
	}
	return src, nil
}

// loadCheckpoint loads a checkpoint folder (with state.json), or a run folder's best checkpoint,
// else its latest.
func loadCheckpoint(path string) (*checkpoint.Checkpoint, error) {
	if _, err := os.Stat(filepath.Join(path, checkpoint.StateFile)); err == nil {
		ck, err := checkpoint.Load(path)
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		return ck, nil
	}
	ck, _, e1 := checkpoint.LoadBest(path)
	if e1 == nil {
		return ck, nil
	}
	ck, _, e2 := checkpoint.LoadLatest(path)
	if e2 != nil {
		return nil, fmt.Errorf("model %s: no checkpoint: %v; %v", path, e1, e2)
	}
	return ck, nil
}

// build makes the model spec describes, loads weights into it (nil: a TorchScript module brings
// its own), folds its batch norms and has its convolutions prepacked on CPU: the embedder only runs
// inference.
func (spec ModelSpec) build(path string, weights map[string]*torch.Tensor) (*nn.Model, error) {
	m, err := nn.New(nn.Config{Backbone: spec.Backbone, InChannels: spec.Channels, ImageSize: spec.ImageSize,
		EmbedDim: spec.EmbedDim, L2Norm: spec.L2Norm != nil && *spec.L2Norm, Device: spec.Device,
		ChannelsLast: spec.ChannelsLast})
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	// Strict: a tensor the model lacks, or a file tensor the model has no place for, is an error
	// naming them (a file whose names do not match would otherwise run on random weights).
	// Classifier heads (a pretraining checkpoint's, torchvision's fc) and the training metric's
	// temperature are not needed for embeddings.
	if weights != nil {
		if _, err := nn.LoadTrained(m.State(), weights, path); err != nil {
			m.Close()
			return nil, fmt.Errorf("model %s: %w", path, err)
		}
	}
	if err := m.FoldBatchNorm(); err != nil {
		m.Close()
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if err := m.PrepackConvolutions(); err != nil {
		m.Close()
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return m, nil
}

// chunk is the most images per forward call: spec.Chunk, or when negative Conv-4's cost per image
// does not fall with the batch on CPU and its activations spill out of cache in big calls (4);
// deeper backbones (weights reused across the batch) and GPUs gain from the whole batch (0):
// ResNet-18 at 112 px serves 5.0× the single-client rate at 32 clients whole, 3.2× in chunks of 4
// (docs/benchmarks.md).
func (s ModelSpec) chunk() int {
	if s.Chunk >= 0 {
		return s.Chunk
	}
	if s.Device == torch.CPU && s.Backbone == "conv4" {
		return 4
	}
	return 0
}

// isTorchScript reports whether path is a TorchScript module (torch.jit.save), told from a
// torch.save state dict (both are zip archives) by its content.
func isTorchScript(path string) bool {
	return strings.ToLower(filepath.Ext(path)) == ".torchscript" || nn.IsTorchScript(path)
}

// fill sets the zero fields of s from a run config.
func (s *ModelSpec) fill(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	var top map[string]any
	if err := json.Unmarshal(raw, &top); err != nil {
		return fmt.Errorf("run config: %w", err)
	}
	look := func(keys ...string) any {
		for _, m := range []map[string]any{top, sub(top, "model")} {
			for k, v := range m {
				for _, want := range keys {
					if strings.EqualFold(strings.ReplaceAll(k, "-", "_"), want) {
						return v
					}
				}
			}
		}
		return nil
	}
	str := func(v any) string { s, _ := v.(string); return s }
	num := func(v any) int { f, _ := v.(float64); return int(f) }
	if s.Backbone == "" {
		s.Backbone = str(look("backbone", "model", "arch"))
	}
	if s.ImageSize == 0 {
		s.ImageSize = num(look("image_size", "imagesize", "size"))
	}
	if s.Channels == 0 {
		s.Channels = num(look("in_channels", "inchannels", "channels"))
	}
	if s.EmbedDim == 0 {
		s.EmbedDim = num(look("embed_dim", "embeddim"))
	}
	if s.Resize == 0 {
		s.Resize = num(look("resize"))
	}
	flag := func(keys ...string) bool {
		switch v := look(keys...).(type) {
		case bool:
			return v
		case string:
			return v == "true"
		}
		return false
	}
	s.Fit = s.Fit || flag("fit")
	s.Squash = s.Squash || flag("squash")
	s.FlipTTA = s.FlipTTA || flag("flip_tta", "fliptta")
	switch v := look("invert").(type) {
	case bool:
		s.Invert = s.Invert || v
	case string:
		s.Invert = s.Invert || v == "true"
	}
	if s.L2Norm == nil {
		if b, ok := look("l2_norm", "l2norm").(bool); ok {
			s.L2Norm = &b
		}
	}
	if s.Mean == nil && s.Std == nil {
		s.Mean, s.Std = floats(look("mean")), floats(look("std"))
	}
	return nil
}

// floats reads a JSON array of numbers (nil otherwise).
func floats(v any) []float32 {
	xs, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]float32, 0, len(xs))
	for _, x := range xs {
		f, ok := x.(float64)
		if !ok {
			return nil
		}
		out = append(out, float32(f))
	}
	return out
}

func sub(m map[string]any, k string) map[string]any {
	v, _ := m[k].(map[string]any)
	return v
}
