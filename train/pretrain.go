package train

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"protoherb/dataset"
	"protoherb/nn"
	"protoherb/progress"
	"protoherb/torch"
)

// maxPretrainVal caps the held-out images a pretraining validation classifies.
const maxPretrainVal = 5000

// pretrain is softmax classification on the most populated classes (or all of them): a backbone
// that train --init can start from.
type pretrain struct {
	rs        *runState
	d         *dataset.Dataset
	src, vsrc Images
	classIdx  []int       // classifier output → dataset class
	label     map[int]int // dataset class → classifier output
	train     []int       // training sample positions
	val       []int       // validation sample positions
	balanced  *dataset.BalancedSampler
	target    []int64
	permCache []int
	permEpoch int
}

func newPretrain(ctx context.Context, rs *runState, bar progress.Options) (*pretrain, error) {
	c := &rs.cfg
	d, err := dataset.Open(c.Data, dataset.Options{Format: c.Format, Split: c.Split})
	if err != nil {
		return nil, err
	}
	p := &pretrain{rs: rs, d: d, label: map[int]int{}}
	if c.TopClasses > 0 {
		p.classIdx = dataset.TopClasses(d, c.TopClasses)
	} else {
		p.classIdx = dataset.TopClasses(d, len(d.Classes))
		slices.Sort(p.classIdx)
	}
	for i, k := range p.classIdx {
		p.label[k] = i
	}
	tr, va := dataset.StratifiedSplit(d, c.ValFrac, c.Seed)
	keep := func(pos []int) []int {
		var out []int
		for _, i := range pos {
			if _, ok := p.label[d.Samples[i].Label]; ok {
				out = append(out, i)
			}
		}
		return out
	}
	p.train, p.val = keep(tr), keep(va)
	if len(p.val) > maxPretrainVal {
		r := rand.New(rand.NewPCG(c.Seed, 0x7a1))
		r.Shuffle(len(p.val), func(i, j int) { p.val[i], p.val[j] = p.val[j], p.val[i] })
		p.val = p.val[:maxPretrainVal]
		slices.Sort(p.val)
	}
	if p.src, err = newImagesFor(ctx, c, d, p.train, c.Augment, bar); err != nil {
		return nil, err
	}
	p.train = usablePositions(p.src, p.train)
	if len(p.train) == 0 {
		return nil, fmt.Errorf("pretrain: %s: no training images in the chosen classes", c.Data)
	}
	if len(p.val) > 0 && c.EvalEvery > 0 {
		if p.vsrc, err = newImagesFor(ctx, c, d, p.val, false, bar); err != nil {
			return nil, err
		}
		p.val = usablePositions(p.vsrc, p.val)
	}
	if c.Sampling == "balanced" {
		if p.balanced, err = dataset.NewBalancedSampler(d, p.train, nil); err != nil {
			return nil, fmt.Errorf("pretrain: %w", err)
		}
	}
	slog.Info("pretrain: classes", "classes", len(p.classIdx), "train_images", len(p.train), "val_images", len(p.val), "sampling", c.Sampling)
	if rs.model, err = nn.New(modelConfig(c, len(p.classIdx), rs.dev)); err != nil {
		return nil, err
	}
	p.target = make([]int64, c.BatchSize)
	return p, nil
}

// batch returns the sample positions of a step: class-balanced draws, or (plain) consecutive slices
// of a per-epoch permutation derived from the seed, so that a step's batch depends only on the
// step and the run's generator.
func (p *pretrain) batch(r *rand.Rand, step int) []int {
	b := p.rs.cfg.BatchSize
	if p.balanced != nil {
		return p.balanced.Batch(r, b)
	}
	out := make([]int, b)
	n := len(p.train)
	for i := range out {
		k := step*b + i
		epoch, j := k/n, k%n
		out[i] = p.train[p.perm(epoch)[j]]
	}
	return out
}

// perm returns epoch's permutation of the training positions (cached for the current epoch).
func (p *pretrain) perm(epoch int) []int {
	if p.permEpoch != epoch || p.permCache == nil {
		r := rand.New(rand.NewPCG(p.rs.cfg.Seed, uint64(epoch)+0xe90c))
		p.permCache = r.Perm(len(p.train))
		p.permEpoch = epoch
	}
	return p.permCache
}

func (p *pretrain) plan(r *rand.Rand, step int) ([]int, uint64) {
	idx := p.batch(r, step)
	return idx, r.Uint64()
}

func (p *pretrain) source() Images { return p.src }

// unit is one image: a distributed step splits its batch across the ranks.
func (p *pretrain) unit() int { return 1 }

func (p *pretrain) step(s *torch.Scope, idx []int, xs []float32) (stepResult, error) {
	t0 := time.Now()
	for i, k := range idx {
		p.target[i] = int64(p.label[p.d.Samples[k].Label])
	}
	x := p.rs.input(s, xs, len(idx))
	data := time.Since(t0)
	logits := p.rs.model.Logits(x, p.rs.trainMode)
	y := torch.FromInt64(s, p.target[:len(idx)], int64(len(idx)))
	if p.rs.dev != torch.CPU {
		y = y.ToDevice(p.rs.dev)
	}
	loss := torch.CrossEntropy(logits, y, p.rs.cfg.LabelSmoothing, torch.ReduceMean)
	v, err := p.rs.backward(loss)
	if err != nil {
		return stepResult{loss: v}, err
	}
	acc, err := accuracy(logits, p.target[:len(idx)])
	return stepResult{loss: v, acc: acc, images: len(idx), data: data}, err
}

// validate classifies the held-out images (eval mode) and reports top-1 accuracy.
func (p *pretrain) validate(ctx context.Context) (map[string]float64, float64, bool, error) {
	if p.vsrc == nil || len(p.val) == 0 {
		return nil, 0, false, nil
	}
	right := 0
	var err error
	torch.NoGrad(func() {
		s := torch.NewScope()
		defer s.Close()
		for start := 0; start < len(p.val); start += embedBatch {
			idx := p.val[start:min(start+embedBatch, len(p.val))]
			var xs []float32
			if xs, err = p.vsrc.Load(ctx, idx, 0); err != nil {
				return
			}
			target := make([]int64, len(idx))
			for i, k := range idx {
				target[i] = int64(p.label[p.d.Samples[k].Label])
			}
			var acc float64
			if acc, err = accuracy(p.rs.model.Logits(p.rs.input(s, xs, len(idx)), false), target); err != nil {
				return
			}
			right += int(acc*float64(len(idx)) + 0.5)
			s.Reset()
		}
	})
	if err != nil {
		return nil, 0, false, err
	}
	acc := float64(right) / float64(len(p.val))
	return map[string]float64{"acc": acc, "images": float64(len(p.val))}, acc, true, nil
}

func (p *pretrain) classes() json.RawMessage { return classList(p.d, p.classIdx) }

func (p *pretrain) epoch(step int) int { return step * p.rs.cfg.BatchSize / max(len(p.train), 1) }

func (p *pretrain) close() {}
