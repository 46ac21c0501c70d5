package nn

import "protoherb/torch"

// Conv4 is the prototypical-networks embedding (Snell et al. 2017): four blocks of
// [conv3×3 64 (with bias), batch norm, ReLU, max-pool 2], flattened. It gives 64-d on 28×28×1 and
// 1600-d on 84×84×3.
//
// Parameter names are those of the reference PyTorch code, an nn.Sequential named encoder of four
// nn.Sequential(Conv2d, BatchNorm2d, ReLU, MaxPool2d) blocks: encoder.{0..3}.0.{weight,bias} for the
// convolutions and encoder.{0..3}.1.{weight,bias,running_mean,running_var,num_batches_tracked} for the
// batch norms.
type Conv4 struct {
	Convs [4]*Conv2d
	BNs   [4]*BatchNorm2d
	// ChannelsLast runs the convolutions on NHWC memory layout (same results, often faster on CPU).
	ChannelsLast bool
	outDim       int
}

// NewConv4 returns a Conv-4 for in channels and size×size images.
func NewConv4(dev torch.Device, in, size int) *Conv4 {
	c := &Conv4{}
	ch := int64(in)
	for i := range 4 {
		c.Convs[i] = NewConv2d(dev, ch, 64, 3, 1, 1, true, InitDefault)
		c.BNs[i] = NewBatchNorm2d(dev, 64)
		ch = 64
	}
	s := size
	for range 4 {
		s /= 2
	}
	c.outDim = 64 * s * s
	return c
}

// OutDim returns the flattened feature size for the configured image size.
func (c *Conv4) OutDim() int { return c.outDim }

// Forward maps x [N,C,H,W] to [N, 64·(H/16)·(W/16)].
func (c *Conv4) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := x
	if c.ChannelsLast {
		h = x.ChannelsLast()
	}
	for i := range 4 {
		h = next(h, x, convBNAct(c.Convs[i], c.BNs[i], h, train, actReLU))
		h = next(h, x, torch.MaxPool2d(h, 2, 2, 0, false))
	}
	return next(h, x, h.Flatten(1, -1))
}

func (c *Conv4) visit(p string, v visitor) {
	for i := range 4 {
		pre := p + "encoder." + itoa(i) + "."
		c.Convs[i].visit(pre+"0.", v)
		c.BNs[i].visit(pre+"1.", v)
	}
}

// Parameters lists the trainable tensors in state_dict order.
func (c *Conv4) Parameters() []Param { return collect(c, true, false) }

// Buffers lists the batch-norm statistics in state_dict order.
func (c *Conv4) Buffers() []Param { return collect(c, false, true) }
