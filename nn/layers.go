package nn

import (
	"fmt"
	"math"

	"protoherb/torch"
)

// visitor receives every tensor of a module in PyTorch's state_dict order: within each layer its
// parameters first, then its buffers.
type visitor func(name string, t *torch.Tensor, param bool)

// stateful is implemented by every layer and backbone: it walks its tensors under a name prefix.
type stateful interface {
	visit(prefix string, v visitor)
}

// collect lists a module's tensors: parameters, buffers, or both (state) in state_dict order.
func collect(s stateful, params, buffers bool) []Param {
	var out []Param
	s.visit("", func(name string, t *torch.Tensor, param bool) {
		if (param && params) || (!param && buffers) {
			out = append(out, Param{Name: name, T: t})
		}
	})
	return out
}

// drop frees intermediate results now, scoped or not (the caller's input is never passed here).
// Freeing a handle early is always safe: autograd keeps its own references to what backward needs,
// and under NoGrad the memory goes back at once instead of at the scope's Reset, so an inference
// forward holds about two activations at a time rather than all of them.
func drop(ts ...*torch.Tensor) {
	for _, t := range ts {
		t.Free()
	}
}

// next returns y and frees prev unless prev is the caller's input (which the caller owns) or y
// itself (an op done in place).
func next(prev, input, y *torch.Tensor) *torch.Tensor {
	if prev != input && prev != y {
		drop(prev)
	}
	return y
}

// activate applies ReLU, or LeakyReLU(0.1) when leaky, to h, a layer's own output (never the
// caller's input). With no gradient being recorded (inference under torch.NoGrad) it works in h's
// memory and returns h, as torchvision's inplace=True does: one activation-sized buffer less to
// allocate and write per layer. Otherwise it returns a new tensor, so no graph loses a saved value.
func activate(h *torch.Tensor, leaky bool) *torch.Tensor {
	if torch.GradEnabled() {
		if leaky {
			return h.LeakyRelu()
		}
		return h.Relu()
	}
	var err error
	if leaky {
		err = h.LeakyReluInPlace()
	} else {
		err = h.ReluInPlace()
	}
	if err != nil {
		return torch.Errorf("activation", "%v", err)
	}
	return h
}

// addTo returns h + o, in h's memory when no gradient is being recorded (see activate).
func addTo(h, o *torch.Tensor) *torch.Tensor {
	if torch.GradEnabled() {
		return h.Add(o)
	}
	if err := h.AddInPlace(o); err != nil {
		return torch.Errorf("add", "%v", err)
	}
	return h
}

// param makes a trainable leaf tensor from a freshly initialised one.
func param(t *torch.Tensor) *torch.Tensor { return t.SetRequiresGrad(true) }

// uniform returns U(-bound, bound) samples from libtorch's generator.
func uniform(dev torch.Device, bound float64, shape ...int64) *torch.Tensor {
	r := torch.Rand(nil, torch.Float32, dev, shape...)
	a := r.MulScalar(2 * bound)
	r.Free()
	b := a.AddScalar(-bound)
	a.Free()
	return b
}

// normal returns N(0, std²) samples from libtorch's generator.
func normal(dev torch.Device, std float64, shape ...int64) *torch.Tensor {
	r := torch.Randn(nil, torch.Float32, dev, shape...)
	out := r.MulScalar(std)
	r.Free()
	return out
}

// Init selects how a convolution's weight is initialised.
type Init int

const (
	// InitDefault is PyTorch's nn.Conv2d/nn.Linear default: kaiming_uniform_(a=√5), i.e.
	// U(±1/√fan_in), and bias U(±1/√fan_in).
	InitDefault Init = iota
	// InitKaimingFanOut is torchvision's ResNet init: kaiming_normal_(mode="fan_out", nonlinearity="relu"),
	// i.e. N(0, 2/fan_out).
	InitKaimingFanOut
)

// Conv2d is a 2-D convolution with PyTorch's nn.Conv2d parameter names (weight, bias).
type Conv2d struct {
	Weight, Bias *torch.Tensor // Bias may be nil
	Opts         torch.Conv2dOptions
	folded       *foldedConv // with the batch norm after it, for inference (Model.FoldBatchNorm)
}

// NewConv2d returns a square-kernel convolution in → out channels.
func NewConv2d(dev torch.Device, in, out, kernel, stride, padding int64, bias bool, init Init) *Conv2d {
	fanIn := float64(in * kernel * kernel)
	c := &Conv2d{Opts: torch.Conv2dOptions{Stride: [2]int64{stride, stride}, Padding: [2]int64{padding, padding}}}
	switch init {
	case InitKaimingFanOut:
		c.Weight = param(normal(dev, math.Sqrt(2/float64(out*kernel*kernel)), out, in, kernel, kernel))
	default:
		c.Weight = param(uniform(dev, 1/math.Sqrt(fanIn), out, in, kernel, kernel))
	}
	if bias {
		c.Bias = param(uniform(dev, 1/math.Sqrt(fanIn), out))
	}
	return c
}

// Forward convolves x.
func (c *Conv2d) Forward(x *torch.Tensor) *torch.Tensor {
	return torch.Conv2d(x, c.Weight, c.Bias, c.Opts)
}

func (c *Conv2d) visit(p string, v visitor) { visitWeightBias(p, v, c.Weight, c.Bias) }

// visitWeightBias visits a weight and an optional bias.
func visitWeightBias(p string, v visitor, w, b *torch.Tensor) {
	v(p+"weight", w, true)
	if b != nil {
		v(p+"bias", b, true)
	}
}

// BatchNorm2d is PyTorch's nn.BatchNorm2d with its defaults (momentum 0.1, eps 1e-5, affine, tracked
// running statistics and an int64 num_batches_tracked counter).
type BatchNorm2d struct {
	Weight, Bias            *torch.Tensor
	RunningMean, RunningVar *torch.Tensor
	NumBatchesTracked       *torch.Tensor // int64 scalar
	Momentum, Eps           float64
}

// NewBatchNorm2d returns a batch norm over c channels: weight 1, bias 0, running mean 0, variance 1.
func NewBatchNorm2d(dev torch.Device, c int64) *BatchNorm2d {
	return &BatchNorm2d{
		Weight:            param(torch.Ones(nil, torch.Float32, dev, c)),
		Bias:              param(torch.Zeros(nil, torch.Float32, dev, c)),
		RunningMean:       torch.Zeros(nil, torch.Float32, dev, c),
		RunningVar:        torch.Ones(nil, torch.Float32, dev, c),
		NumBatchesTracked: torch.Zeros(nil, torch.Int64, dev),
		Momentum:          0.1,
		Eps:               1e-5,
	}
}

// Forward normalises x; in training it uses batch statistics and updates the running ones.
func (b *BatchNorm2d) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	y := torch.BatchNorm(x, b.Weight, b.Bias, b.RunningMean, b.RunningVar, train, b.Momentum, b.Eps)
	if train && y.Err() == nil {
		n := b.NumBatchesTracked.AddScalar(1)
		if err := b.NumBatchesTracked.CopyFrom(n); err != nil {
			drop(y)
			y = torch.Errorf("batch_norm", "update num_batches_tracked: %v", err)
		}
		n.Free()
	}
	return y
}

func (b *BatchNorm2d) visit(p string, v visitor) {
	v(p+"weight", b.Weight, true)
	v(p+"bias", b.Bias, true)
	v(p+"running_mean", b.RunningMean, false)
	v(p+"running_var", b.RunningVar, false)
	v(p+"num_batches_tracked", b.NumBatchesTracked, false)
}

// Linear is PyTorch's nn.Linear (weight [out,in], bias [out]) with its default init.
type Linear struct {
	Weight, Bias *torch.Tensor // Bias may be nil
}

// NewLinear returns a linear layer in → out.
func NewLinear(dev torch.Device, in, out int64, bias bool) *Linear {
	bound := 1 / math.Sqrt(float64(in))
	l := &Linear{Weight: param(uniform(dev, bound, out, in))}
	if bias {
		l.Bias = param(uniform(dev, bound, out))
	}
	return l
}

// Forward returns x @ Wᵀ + b.
func (l *Linear) Forward(x *torch.Tensor) *torch.Tensor { return torch.Linear(x, l.Weight, l.Bias) }

func (l *Linear) visit(p string, v visitor) { visitWeightBias(p, v, l.Weight, l.Bias) }

// CosineClassifier scores x against class weight vectors by cosine similarity times a learned scale
// (Chen et al., "A closer look at few-shot classification"): parameters weight [C,D] and scale [].
type CosineClassifier struct {
	Weight, Scale *torch.Tensor
}

// NewCosineClassifier returns a cosine head over in-d features for out classes, scale starting at 10.
func NewCosineClassifier(dev torch.Device, in, out int64) *CosineClassifier {
	return &CosineClassifier{
		Weight: param(uniform(dev, 1/math.Sqrt(float64(in)), out, in)),
		Scale:  param(torch.Full(nil, 10, torch.Float32, dev)),
	}
}

// Forward returns scale · cos(x, W) as [N, C].
func (c *CosineClassifier) Forward(x *torch.Tensor) *torch.Tensor {
	xn := torch.Normalize(x, 2, 1, 1e-12)
	wn := torch.Normalize(c.Weight, 2, 1, 1e-12)
	cos := torch.Linear(xn, wn, nil) // xn @ wnᵀ
	drop(xn, wn)
	y := cos.Mul(c.Scale)
	drop(cos)
	return y
}

func (c *CosineClassifier) visit(p string, v visitor) {
	v(p+"weight", c.Weight, true)
	v(p+"scale", c.Scale, true)
}

// firstErr returns the first error of a module's tensors (initialisation failures).
func firstErr(s stateful) error {
	var err error
	s.visit("", func(name string, t *torch.Tensor, _ bool) {
		if err == nil && t.Err() != nil {
			err = fmt.Errorf("init %s: %w", name, t.Err())
		}
	})
	return err
}
