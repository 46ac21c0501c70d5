package nn

import (
	"fmt"
	"log/slog"
	"sync"

	"protoherb/torch"
)

// foldedConv is a convolution with the eval-mode batch norm after it folded in: one convolution
// with bias computes both. With pack set (Model.PrepackConvolutions) the first CPU float32 inference
// pass also packs it for oneDNN (torch.PackedConv), with the ReLU that follows fused in.
type foldedConv struct {
	weight, bias *torch.Tensor
	pack         bool
	once         sync.Once
	packed       *torch.PackedConv // nil until packed, or where packing is not possible
}

// activation is what follows a convolution and its batch norm.
type activation int

const (
	actNone activation = iota
	actReLU
	actLeaky // LeakyReLU(0.1)
)

// convBNAct runs c, then b, then act on x. In inference (train false, no gradient recorded) a pair
// folded by Model.FoldBatchNorm is one convolution, the batch norm's pass over the activation gone;
// prepacked, its ReLU is in the same pass too.
func convBNAct(c *Conv2d, b *BatchNorm2d, x *torch.Tensor, train bool, act activation) *torch.Tensor {
	var h *torch.Tensor
	if f := c.folded; f != nil && !train && !torch.GradEnabled() {
		if p := f.packedFor(x, c.Opts, act == actReLU); p == nil {
			h = torch.Conv2d(x, f.weight, f.bias, c.Opts)
		} else if h = p.Forward(x); act != actLeaky {
			return h // the ReLU, if any, is fused in
		}
	} else {
		conv := c.Forward(x)
		h = next(conv, x, b.Forward(conv, train))
	}
	if act == actNone {
		return h
	}
	return next(h, x, activate(h, act == actLeaky))
}

// packedFor returns f packed for input like x with or without a fused ReLU, packing it at the first
// call, or nil where f is not to be packed or cannot be (a GPU or float64 input, a libtorch without
// the operators): the caller then runs the folded convolution. Packing is for a fixed call site, so
// relu is the same at every call.
func (f *foldedConv) packedFor(x *torch.Tensor, o torch.Conv2dOptions, relu bool) *torch.PackedConv {
	if !f.pack || x.Device() != torch.CPU || x.DType() != torch.Float32 {
		return nil
	}
	f.once.Do(func() {
		p, err := torch.PackConv2d(f.weight, f.bias, o, x, relu)
		if err != nil {
			slog.Debug("convolution not prepacked; running it unpacked", "err", err)
			return
		}
		f.packed = p
	})
	if f.packed == nil || f.packed.ReLU() != relu {
		return nil
	}
	return f.packed
}

// convBNPair is a convolution and the batch norm that reads its output.
type convBNPair struct {
	conv *Conv2d
	bn   *BatchNorm2d
}

// pairer is a backbone whose convolutions are each followed by a batch norm.
type pairer interface {
	convBNPairs() []convBNPair
}

// FoldBatchNorm folds every batch norm of the built-in backbones into the convolution before it,
// as PyTorch's torch.fx fuse and inference runtimes do: with s = γ/√(running var + ε), the weight
// becomes W·s per output channel and the bias (b − running mean)·s + β. Forward passes with train
// false under torch.NoGrad then run one convolution per pair (1–8 % more images/s for Conv-4,
// ResNet-18 and ResNet-50 on CPU in alternating runs, equal to the unfolded pass to float32
// rounding); training, gradients and saved state keep using the
// original parameters. The folded weights are a snapshot: call FoldBatchNorm again after the
// weights change. A TorchScript backbone is left as it is.
func (m *Model) FoldBatchNorm() error {
	p, ok := m.Backbone.(pairer)
	if !ok {
		return nil
	}
	var err error
	torch.NoGrad(func() {
		for _, cb := range p.convBNPairs() {
			var f *foldedConv
			if f, err = fold(cb.conv, cb.bn); err != nil {
				return
			}
			cb.conv.unfold()
			cb.conv.folded = f
		}
	})
	if err != nil {
		m.unfold()
		return fmt.Errorf("nn: fold batch norm: %w", err)
	}
	return nil
}

// unfold drops the folded weights.
func (m *Model) unfold() {
	if p, ok := m.Backbone.(pairer); ok {
		for _, cb := range p.convBNPairs() {
			cb.conv.unfold()
		}
	}
}

func (c *Conv2d) unfold() {
	if c.folded != nil {
		drop(c.folded.weight, c.folded.bias)
		c.folded.packed.Free()
		c.folded = nil
	}
}

// PrepackConvolutions has inference passes on CPU run each folded convolution through oneDNN with
// its weight reordered once (torch.PackedConv) and the ReLU after it fused in, as PyTorch's
// torch.jit.optimize_for_inference does: results equal to float32 rounding, and from 3–5 % (ResNets
// at batch 16–32) to 12–60 % (Conv-4 at batch 4, ResNet-18 at batch 1) more images/s
// (docs/benchmarks.md). Each convolution is packed at its first inference pass, for that input's
// layout and size; GPU passes and libtorches without the operators run the folded convolutions as
// they are. Call it after FoldBatchNorm (it is an error before); a new FoldBatchNorm drops the
// packing.
func (m *Model) PrepackConvolutions() error {
	p, ok := m.Backbone.(pairer)
	if !ok {
		return nil
	}
	for _, cb := range p.convBNPairs() {
		if cb.conv.folded == nil {
			return fmt.Errorf("nn: prepack convolutions: the batch norms are not folded (call FoldBatchNorm first)")
		}
	}
	for _, cb := range p.convBNPairs() {
		cb.conv.folded.pack = true
	}
	return nil
}

// fold computes the folded weight and bias of c followed by b (b in eval mode). The parameters are
// owned by no scope, so every intermediate is freed here.
func fold(c *Conv2d, b *BatchNorm2d) (*foldedConv, error) {
	v := b.RunningVar.AddScalar(b.Eps)
	sd := v.Sqrt()
	scale := b.Weight.Div(sd)
	col := scale.Reshape(scale.Size(0), 1, 1, 1)
	w := c.Weight.Mul(col)
	shift := b.RunningMean.Neg()
	if c.Bias != nil {
		drop(shift)
		shift = c.Bias.Sub(b.RunningMean)
	}
	scaled := shift.Mul(scale)
	f := &foldedConv{weight: w.Contiguous(), bias: scaled.Add(b.Bias)}
	drop(v, sd, scale, col, w, shift, scaled)
	for _, t := range []*torch.Tensor{f.weight, f.bias} {
		if err := t.Err(); err != nil {
			drop(f.weight, f.bias)
			return nil, err
		}
	}
	return f, nil
}

func (c *Conv4) convBNPairs() []convBNPair {
	var ps []convBNPair
	for i := range c.Convs {
		ps = append(ps, convBNPair{c.Convs[i], c.BNs[i]})
	}
	return ps
}

func (b *resBlock) convBNPairs() []convBNPair {
	ps := []convBNPair{{b.conv1, b.bn1}, {b.conv2, b.bn2}}
	if b.conv3 != nil {
		ps = append(ps, convBNPair{b.conv3, b.bn3})
	}
	if b.downConv != nil {
		ps = append(ps, convBNPair{b.downConv, b.downBN})
	}
	return ps
}

func (r *ResNet) convBNPairs() []convBNPair {
	ps := []convBNPair{{r.Conv1, r.BN1}}
	for _, layer := range r.Layers {
		for _, b := range layer {
			ps = append(ps, b.convBNPairs()...)
		}
	}
	return ps
}

func (r *ResNet12) convBNPairs() []convBNPair {
	var ps []convBNPair
	for _, b := range r.Blocks {
		ps = append(ps, b.convBNPairs()...)
	}
	return ps
}
