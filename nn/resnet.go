package nn

import (
	"strconv"

	"protoherb/torch"
)

func itoa(i int) string { return strconv.Itoa(i) }

// ResNet is torchvision's ResNet-18 or ResNet-50 without its fc layer (the Model's classifier head
// takes the name fc, so a torchvision state dict loads unchanged). Parameter names are torchvision's:
// conv1.weight, bn1.*, layer{1..4}.{i}.conv{1,2[,3]}.weight, layer{1..4}.{i}.bn{1,2[,3]}.*,
// layer{2..4}.0.downsample.{0.weight,1.*}. Init is torchvision's: kaiming_normal_(fan_out, relu) for
// convolutions, weight 1 / bias 0 for batch norms. It accepts any input of 32×32 or more and ends in
// a global average pool: 512-d (ResNet-18) or 2048-d (ResNet-50).
type ResNet struct {
	Conv1        *Conv2d
	BN1          *BatchNorm2d
	Layers       [4][]*resBlock
	ChannelsLast bool
	outDim       int
}

// resBlock is a torchvision BasicBlock (conv3 nil) or Bottleneck.
type resBlock struct {
	conv1, conv2, conv3 *Conv2d
	bn1, bn2, bn3       *BatchNorm2d
	downConv            *Conv2d
	downBN              *BatchNorm2d
}

// NewResNet returns "resnet18" (BasicBlock [2,2,2,2]) or "resnet50" (Bottleneck [3,4,6,3]).
func NewResNet(dev torch.Device, depth int, in int) *ResNet {
	bottleneck := depth == 50
	blocks := [4]int{2, 2, 2, 2}
	expansion := int64(1)
	if bottleneck {
		blocks = [4]int{3, 4, 6, 3}
		expansion = 4
	}
	r := &ResNet{
		Conv1: NewConv2d(dev, int64(in), 64, 7, 2, 3, false, InitKaimingFanOut),
		BN1:   NewBatchNorm2d(dev, 64),
	}
	inplanes := int64(64)
	for li, planes := range [4]int64{64, 128, 256, 512} {
		stride := int64(2)
		if li == 0 {
			stride = 1
		}
		for bi := 0; bi < blocks[li]; bi++ {
			s := int64(1)
			if bi == 0 {
				s = stride
			}
			b := &resBlock{}
			if bottleneck {
				b.conv1 = NewConv2d(dev, inplanes, planes, 1, 1, 0, false, InitKaimingFanOut)
				b.bn1 = NewBatchNorm2d(dev, planes)
				b.conv2 = NewConv2d(dev, planes, planes, 3, s, 1, false, InitKaimingFanOut)
				b.bn2 = NewBatchNorm2d(dev, planes)
				b.conv3 = NewConv2d(dev, planes, planes*expansion, 1, 1, 0, false, InitKaimingFanOut)
				b.bn3 = NewBatchNorm2d(dev, planes*expansion)
			} else {
				b.conv1 = NewConv2d(dev, inplanes, planes, 3, s, 1, false, InitKaimingFanOut)
				b.bn1 = NewBatchNorm2d(dev, planes)
				b.conv2 = NewConv2d(dev, planes, planes, 3, 1, 1, false, InitKaimingFanOut)
				b.bn2 = NewBatchNorm2d(dev, planes)
			}
			if s != 1 || inplanes != planes*expansion {
				b.downConv = NewConv2d(dev, inplanes, planes*expansion, 1, s, 0, false, InitKaimingFanOut)
				b.downBN = NewBatchNorm2d(dev, planes*expansion)
			}
			inplanes = planes * expansion
			r.Layers[li] = append(r.Layers[li], b)
		}
	}
	r.outDim = int(inplanes)
	return r
}

// OutDim returns the feature size (512 or 2048).
func (r *ResNet) OutDim() int { return r.outDim }

// Forward maps x [N,C,H,W] to [N, OutDim].
func (r *ResNet) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := x
	if r.ChannelsLast {
		h = x.ChannelsLast()
	}
	h = next(h, x, convBNAct(r.Conv1, r.BN1, h, train, actReLU))
	h = next(h, x, torch.MaxPool2d(h, 3, 2, 1, false))
	for _, layer := range r.Layers {
		for _, b := range layer {
			h = next(h, x, b.forward(h, train, false))
		}
	}
	h = next(h, x, torch.AdaptiveAvgPool2d(h, 1, 1))
	return next(h, x, h.Flatten(1, -1))
}

// forward runs the block on x (which it does not free); leaky selects LeakyReLU(0.1) for the
// inner activations (ResNet-12).
func (b *resBlock) forward(x *torch.Tensor, train, leaky bool) *torch.Tensor {
	act := actReLU
	if leaky {
		act = actLeaky
	}
	// conv2 is a basic block's last convolution, activated only after the residual sum; in a
	// bottleneck, conv3 is.
	act2 := actNone
	if b.conv3 != nil {
		act2 = act
	}
	h := convBNAct(b.conv1, b.bn1, x, train, act)
	h = next(h, x, convBNAct(b.conv2, b.bn2, h, train, act2))
	if b.conv3 != nil {
		h = next(h, x, convBNAct(b.conv3, b.bn3, h, train, actNone))
	}
	short := x
	if b.downConv != nil {
		short = convBNAct(b.downConv, b.downBN, x, train, actNone)
	}
	h = next(h, x, addTo(h, short))
	if short != x {
		drop(short)
	}
	return next(h, x, activate(h, leaky))
}

func (b *resBlock) visit(p string, v visitor) {
	b.conv1.visit(p+"conv1.", v)
	b.bn1.visit(p+"bn1.", v)
	b.conv2.visit(p+"conv2.", v)
	b.bn2.visit(p+"bn2.", v)
	if b.conv3 != nil {
		b.conv3.visit(p+"conv3.", v)
		b.bn3.visit(p+"bn3.", v)
	}
	if b.downConv != nil {
		b.downConv.visit(p+"downsample.0.", v)
		b.downBN.visit(p+"downsample.1.", v)
	}
}

func (r *ResNet) visit(p string, v visitor) {
	r.Conv1.visit(p+"conv1.", v)
	r.BN1.visit(p+"bn1.", v)
	for li, layer := range r.Layers {
		for bi, b := range layer {
			b.visit(p+"layer"+itoa(li+1)+"."+itoa(bi)+".", v)
		}
	}
}

// ResNet12 is the few-shot ResNet-12 (as in MetaOptNet and RFS): four residual stages of three
// conv3×3 (no bias) + batch norm, LeakyReLU(0.1) between them and after the sum with a 1×1 conv +
// batch norm shortcut, and a 2×2 max-pool after each stage; widths 64-160-320-640, then a global
// average pool: 640-d. Names: layer{1..4}.0.{conv1,bn1,conv2,bn2,conv3,bn3}.*,
// layer{1..4}.0.downsample.{0.weight,1.*} (RFS's naming). Init: kaiming_normal_(fan_out).
type ResNet12 struct {
	Blocks       [4]*resBlock
	ChannelsLast bool
}

// NewResNet12 returns a ResNet-12 for in input channels.
func NewResNet12(dev torch.Device, in int) *ResNet12 {
	r := &ResNet12{}
	inplanes := int64(in)
	for i, w := range [4]int64{64, 160, 320, 640} {
		r.Blocks[i] = &resBlock{
			conv1:    NewConv2d(dev, inplanes, w, 3, 1, 1, false, InitKaimingFanOut),
			bn1:      NewBatchNorm2d(dev, w),
			conv2:    NewConv2d(dev, w, w, 3, 1, 1, false, InitKaimingFanOut),
			bn2:      NewBatchNorm2d(dev, w),
			conv3:    NewConv2d(dev, w, w, 3, 1, 1, false, InitKaimingFanOut),
			bn3:      NewBatchNorm2d(dev, w),
			downConv: NewConv2d(dev, inplanes, w, 1, 1, 0, false, InitKaimingFanOut),
			downBN:   NewBatchNorm2d(dev, w),
		}
		inplanes = w
	}
	return r
}

// OutDim is 640.
func (r *ResNet12) OutDim() int { return 640 }

// Forward maps x [N,C,H,W] (H,W ≥ 16) to [N,640].
func (r *ResNet12) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := x
	if r.ChannelsLast {
		h = x.ChannelsLast()
	}
	for _, b := range r.Blocks {
		h = next(h, x, b.forward12(h, train))
		h = next(h, x, torch.MaxPool2d(h, 2, 2, 0, false))
	}
	h = next(h, x, torch.AdaptiveAvgPool2d(h, 1, 1))
	return next(h, x, h.Flatten(1, -1))
}

// forward12 is the ResNet-12 block: LeakyReLU(0.1) inside and after the sum (as RFS).
func (b *resBlock) forward12(x *torch.Tensor, train bool) *torch.Tensor {
	return b.forward(x, train, true)
}

func (r *ResNet12) visit(p string, v visitor) {
	for i, b := range r.Blocks {
		b.visit(p+"layer"+itoa(i+1)+".0.", v)
	}
}

// Parameters lists the trainable tensors in state_dict order.
func (r *ResNet) Parameters() []Param { return collect(r, true, false) }

// Buffers lists the batch-norm statistics in state_dict order.
func (r *ResNet) Buffers() []Param { return collect(r, false, true) }

// Parameters lists the trainable tensors in state_dict order.
func (r *ResNet12) Parameters() []Param { return collect(r, true, false) }

// Buffers lists the batch-norm statistics in state_dict order.
func (r *ResNet12) Buffers() []Param { return collect(r, false, true) }
