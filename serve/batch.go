package serve

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"protoherb/infer"
)

// A batcher merges concurrent embedding requests into one forward pass.
//
// Policy: a batch starts with the first waiting request. It then takes every request already
// queued and keeps waiting (at most Window after the first) only while more requests are on their
// way: admitted by a handler but still being read or decoded (the expected counter). So a lone
// client is never delayed by the window, and under load batches fill up to MaxBatch.
type batcher struct {
	emb      infer.Embedder
	maxBatch int
	window   time.Duration
	per      int // floats per image
	queue    chan *job
	expected atomic.Int64 // requests admitted that have not reached the queue yet
	observe  func(n int)  // batch size hook (metrics)
	// search ranks the prototypes for a whole batch of embeddings at once (nil: embeddings only).
	search func(q []float32, n, k int) ([]float32, []int64, int, error)
	done   chan struct{}
}

type job struct {
	x    []float32
	k    int // nearest prototypes wanted (0: the embedding only)
	out  []float32
	dist []float32
	ids  []int64
	err  error
	ok   chan struct{}
}

var errClosed = errors.New("server is shutting down")

func newBatcher(emb infer.Embedder, maxBatch int, window time.Duration, observe func(int)) *batcher {
	tf := emb.Transform()
	c := tf.Channels
	if c == 0 {
		c = 3
	}
	b := &batcher{emb: emb, maxBatch: max(maxBatch, 1), window: window, per: c * tf.Size * tf.Size,
		queue: make(chan *job, 4*max(maxBatch, 1)), observe: observe, done: make(chan struct{})}
	return b
}

// expect announces a request that will call embed soon; the returned func withdraws it (call it
// exactly once, when the request reaches embed or gives up).
func (b *batcher) expect() func() {
	b.expected.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			b.expected.Add(-1)
		}
	}
}

// embed queues one image and waits for its embedding.
func (b *batcher) embed(ctx context.Context, x []float32) ([]float32, error) {
	j, err := b.do(ctx, x, 0)
	return j.out, err
}

// do queues one image and waits for its embedding and, with k > 0, its nearest prototypes.
func (b *batcher) do(ctx context.Context, x []float32, k int) (*job, error) {
	j := &job{x: x, k: k, ok: make(chan struct{})}
	select {
	case b.queue <- j:
	case <-ctx.Done():
		return j, ctx.Err()
	case <-b.done:
		return j, errClosed
	}
	select {
	case <-j.ok:
		return j, j.err
	case <-b.done:
		return j, errClosed
	}
}

// run serves batches until ctx ends.
func (b *batcher) run(ctx context.Context) {
	defer close(b.done)
	batch := make([]*job, 0, b.maxBatch)
	for {
		batch = batch[:0]
		select {
		case j := <-b.queue:
			batch = append(batch, j)
		case <-ctx.Done():
			return
		}
		deadline := time.Now().Add(b.window)
	fill:
		for len(batch) < b.maxBatch {
			select {
			case j := <-b.queue:
				batch = append(batch, j)
				continue
			default:
			}
			if b.expected.Load() <= 0 {
				break // nobody else is on the way
			}
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			t := time.NewTimer(min(wait, 200*time.Microsecond))
			select {
			case j := <-b.queue:
				t.Stop()
				batch = append(batch, j)
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				break fill
			}
		}
		b.process(batch)
	}
}

func (b *batcher) process(batch []*job) {
	n := len(batch)
	x := make([]float32, 0, n*b.per)
	for _, j := range batch {
		x = append(x, j.x...)
	}
	if b.observe != nil {
		b.observe(n)
	}
	out, err := b.emb.Embed(x, n)
	d := b.emb.Dim()
	k := 0
	for _, j := range batch {
		k = max(k, j.k)
	}
	var dist []float32
	var ids []int64
	var kk int
	if err == nil && k > 0 && b.search != nil {
		dist, ids, kk, err = b.search(out, n, k)
	}
	for i, j := range batch {
		switch {
		case err != nil:
			j.err = err
		default:
			j.out = out[i*d : (i+1)*d : (i+1)*d]
			if j.k > 0 && kk > 0 {
				j.dist, j.ids = dist[i*kk:(i+1)*kk:(i+1)*kk], ids[i*kk:(i+1)*kk:(i+1)*kk]
			}
		}
		close(j.ok)
	}
}
