package train

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"time"

	"protoherb/torch"
)

// batch is one step's input: the sample positions and augmentation seed drawn for it, and, once
// loaded, its images.
type batch struct {
	step int // the step (0-based) the batch is for
	idx  []int
	seed uint64
	// rngBefore is the Go generator's state before this batch was drawn: the state a checkpoint
	// taken before the step must hold, and the one restored when the step is abandoned.
	rngBefore []byte

	done chan struct{}
	xs   []float32
	// replaced counts the images that could not be loaded and were replaced (badimage.go).
	replaced int
	err      error
}

// load loads the images of b from src.
func (b *batch) load(ctx context.Context, src Images) {
	if f, ok := src.(*fileImages); ok {
		b.xs, b.replaced, b.err = f.loadReplacing(ctx, b.idx, b.seed)
		return
	}
	b.xs, b.err = src.Load(ctx, b.idx, b.seed)
}

// prefetcher draws each step's batch and loads its images. With ahead set it loads the next step's
// images in the background while the current step computes, so images decoded from files
// (herbarium sheets) cost the step only what the overlap does not hide. A batch is drawn from the
// run's generator in step order, exactly as without prefetching, so runs stay deterministic and
// resume exactly: checkpoints store the generator's state before the prefetched draw.
type prefetcher struct {
	rs      *runState
	src     Images
	plan    func(r *rand.Rand, step int) ([]int, uint64)
	ahead   bool
	pending *batch
	cancel  context.CancelFunc
}

func newPrefetcher(rs *runState, src Images, plan func(r *rand.Rand, step int) ([]int, uint64), ahead bool) *prefetcher {
	return &prefetcher{rs: rs, src: src, plan: plan, ahead: ahead}
}

// loadsAhead reports whether loading the next batch in the background pays: the source decodes
// files, and the decoding does not take the cores the step's libtorch threads compute on (a GPU
// computes, or there are cores to spare). On 2 cores with 2 libtorch threads, decoding alongside the
// step slowed it by 5% more than it hid (docs/benchmarks.md, "Training input").
func loadsAhead(src Images, dev torch.Device) bool {
	if _, inMemory := src.(*memImages); inMemory {
		return false
	}
	return dev != torch.CPU || runtime.NumCPU() > torch.NumThreads()
}

// draw plans the batch of step from the run's generator, recording the generator's state first.
func (p *prefetcher) draw(step int) (*batch, error) {
	before, err := p.rs.pcg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	idx, seed := p.plan(p.rs.rng, step)
	return &batch{step: step, idx: idx, seed: seed, rngBefore: before, done: make(chan struct{})}, nil
}

// start loads b in the background.
func (p *prefetcher) start(ctx context.Context, b *batch) {
	lctx, cancel := context.WithCancel(ctx)
	p.pending, p.cancel = b, cancel
	go func() {
		defer close(b.done)
		b.load(lctx, p.src)
	}()
}

// next returns the loaded batch of step, taking the prefetched one when it is for that step, and
// (ahead) starts loading the batch of step+1 when last is false. The wait is the time spent waiting for
// the images.
func (p *prefetcher) next(ctx context.Context, step int, last bool) (b *batch, wait time.Duration, err error) {
	t0 := time.Now()
	if p.pending != nil && p.pending.step == step {
		b = p.pending
		p.pending, p.cancel = nil, nil
	} else {
		p.stop()
		if b, err = p.draw(step); err != nil {
			return nil, 0, err
		}
		b.load(ctx, p.src)
		close(b.done)
	}
	<-b.done
	wait = time.Since(t0)
	if b.err != nil {
		return b, wait, errors.Join(b.err, p.rewind(b))
	}
	if p.ahead && !last {
		nb, err := p.draw(step + 1)
		if err != nil {
			return b, wait, err
		}
		p.start(ctx, nb)
	}
	return b, wait, nil
}

// rewind abandons b (its step will not be applied): a pending prefetch is dropped and the
// generator goes back to its state before b was drawn.
func (p *prefetcher) rewind(b *batch) error {
	p.stop()
	return p.rs.pcg.UnmarshalBinary(b.rngBefore)
}

// rngState is the generator's state at the current step boundary: before any prefetched draw.
func (p *prefetcher) rngState() ([]byte, error) {
	if p.pending != nil {
		return p.pending.rngBefore, nil
	}
	return p.rs.pcg.MarshalBinary()
}

// stop cancels a pending load and waits for it, leaving the source idle.
func (p *prefetcher) stop() {
	if p.pending == nil {
		return
	}
	p.cancel()
	<-p.pending.done
	p.pending, p.cancel = nil, nil
}
