package nn

import (
	"fmt"

	"protoherb/torch"
)

// foldedConv is a convolution with the eval-mode batch norm after it folded in: one convolution
// with bias computes both.
type foldedConv struct {
	weight, bias *torch.Tensor
}

// convBN runs c and then b on x. In inference (train false, no gradient recorded) a pair folded by
// Model.FoldBatchNorm is one convolution: the batch norm's pass over the activation is gone.
func convBN(c *Conv2d, b *BatchNorm2d, x *torch.Tensor, train bool) *torch.Tensor {
	if f := c.folded; f != nil && !train && !torch.GradEnabled() {
		return torch.Conv2d(x, f.weight, f.bias, c.Opts)
	}
	h := c.Forward(x)
	return next(h, x, b.Forward(h, train))
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
		c.folded = nil
	}
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
