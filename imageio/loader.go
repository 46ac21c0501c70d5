package imageio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"protoherb/dataset"
)

// Item is one image to load.
type Item struct {
	Path string
	// Label is carried into Batch.Labels (a class index; -1 when unknown).
	Label int64
	// Rotate is a fixed rotation in degrees (multiple of 90) applied after the transform.
	Rotate int
}

// ItemsFromDataset lists the samples at positions idx (nil = all) as loader items labelled with
// their class index.
func ItemsFromDataset(d *dataset.Dataset, idx []int) []Item {
	if idx == nil {
		out := make([]Item, len(d.Samples))
		for i, s := range d.Samples {
			out[i] = Item{Path: s.Path, Label: int64(s.Label), Rotate: s.Rotate}
		}
		return out
	}
	out := make([]Item, len(idx))
	for i, j := range idx {
		s := d.Samples[j]
		out[i] = Item{Path: s.Path, Label: int64(s.Label), Rotate: s.Rotate}
	}
	return out
}

// BadImage is an image that could not be loaded.
type BadImage struct {
	// Index is the position in the requested item list.
	Index int
	Path  string
	Err   error
}

func (b BadImage) Error() string { return fmt.Sprintf("%s: %v", b.Path, b.Err) }

// Batch is a batch of transformed images.
type Batch struct {
	// X holds N images as float32 N x C x H x W.
	X          []float32
	N, C, H, W int
	Labels     []int64
	// Index holds each row's position in the requested item list.
	Index []int
	// Bad lists the images of this batch that were skipped.
	Bad []BadImage
	// Decode is the time the workers spent reading and transforming this batch's images (summed
	// over workers: with W workers busy the batch took about Decode/W).
	Decode time.Duration
}

// BadPolicy says what a bad image does.
type BadPolicy int

const (
	// Skip leaves the image out of its batch, counts it and lists it (Stream.Bad).
	Skip BadPolicy = iota
	// Fail ends the stream with an error naming the file.
	Fail
)

// ParseBadPolicy reads "skip" or "fail" (the --on-bad-image flag).
func ParseBadPolicy(s string) (BadPolicy, error) {
	switch s {
	case "skip", "":
		return Skip, nil
	case "fail":
		return Fail, nil
	}
	return Skip, fmt.Errorf("--on-bad-image: want skip or fail, got %q", s)
}

// LoaderOptions configure a Loader.
type LoaderOptions struct {
	// Workers decoding in parallel (0 = GOMAXPROCS).
	Workers int
	// BatchSize images per batch (the last batch may be smaller).
	BatchSize int
	// Prefetch: batches prepared ahead of the consumer (0 = 2). Memory is bounded by
	// (Prefetch+1) batches.
	Prefetch  int
	Transform Transform
	OnBad     BadPolicy
	// MaxPixels refuses larger images (0 = DefaultMaxPixels).
	MaxPixels int
	// Cache, when set, serves images it holds instead of decoding the files.
	Cache *Cache
}

// Loader loads lists of items into batches in parallel.
type Loader struct {
	opt LoaderOptions
}

// NewLoader checks the options.
func NewLoader(opt LoaderOptions) (*Loader, error) {
	t, err := opt.Transform.withDefaults()
	if err != nil {
		return nil, err
	}
	opt.Transform = t
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.BatchSize <= 0 {
		return nil, fmt.Errorf("loader: batch size must be positive, got %d", opt.BatchSize)
	}
	if opt.Prefetch <= 0 {
		opt.Prefetch = 2
	}
	if opt.MaxPixels <= 0 {
		opt.MaxPixels = DefaultMaxPixels
	}
	return &Loader{opt: opt}, nil
}

// Workers is the number of decoding goroutines a stream runs.
func (l *Loader) Workers() int { return l.opt.Workers }

// ItemRand derives the random source of one item from the stream seed and its position, so the
// augmentation of an item does not depend on which worker takes it or when.
func ItemRand(seed uint64, index int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(index)*0x9E3779B97F4A7C15+1))
}

// Stream delivers the batches of one pass over a list of items, in order.
type Stream struct {
	ctx    context.Context
	out    chan result
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	bad    []BadImage
	done   bool
	err    error
}

type result struct {
	b   *Batch
	err error
}

type pending struct {
	batch     *Batch
	first     int // position of the batch's first item
	n         int
	remaining atomic.Int32
	done      chan struct{}
	bad       []BadImage // indexed by slot, filled by workers
	ok        []bool
	decode    atomic.Int64 // nanoseconds the workers spent on the batch
}

type job struct {
	p    *pending
	slot int
}

// Stream starts loading items in consecutive batches of BatchSize. Augmentation is deterministic for
// seed (pass a different seed per epoch). Call Next until io.EOF, and Close.
func (l *Loader) Stream(ctx context.Context, items []Item, seed uint64) *Stream {
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{ctx: ctx, out: make(chan result), cancel: cancel}
	opt := l.opt
	r := &streamRun{
		l:       l,
		opt:     opt,
		items:   items,
		seed:    seed,
		elem:    opt.Transform.Channels * opt.Transform.Size * opt.Transform.Size,
		jobs:    make(chan job, opt.Workers*2),
		batches: make(chan *pending, opt.Prefetch),
		tokens:  make(chan struct{}, opt.Prefetch),
	}
	s.start(func() { r.dispatch(ctx) })
	for w := 0; w < opt.Workers; w++ {
		s.start(func() { r.work(ctx) })
	}
	s.start(func() { s.collect(ctx, r) })
	return s
}

// streamRun is what the goroutines of one stream share: the options, the items, the seed, the
// size of one image's tensor (elem) and the channels between dispatcher, workers and collector.
// Its fields are not modified once the goroutines start.
type streamRun struct {
	l     *Loader
	opt   LoaderOptions
	items []Item
	seed  uint64
	elem  int
	// jobs carries the items to decode, from the dispatcher to the workers.
	jobs chan job
	// batches carries the allocated batches, in order, from the dispatcher to the collector.
	batches chan *pending
	// tokens bounds the batches in flight to Prefetch: the dispatcher takes one per batch, the
	// collector gives it back once the batch is handed out.
	tokens chan struct{}
}

// start runs f in a goroutine that Close waits for.
func (s *Stream) start(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// dispatch is the dispatcher: it allocates a batch when a token is free and queues its items. It
// closes batches and jobs when all are queued or ctx is cancelled.
func (r *streamRun) dispatch(ctx context.Context) {
	defer close(r.jobs)
	defer close(r.batches)
	nb := (len(r.items) + r.opt.BatchSize - 1) / r.opt.BatchSize
	for b := 0; b < nb; b++ {
		select {
		case r.tokens <- struct{}{}:
		case <-ctx.Done():
			return
		}
		first := b * r.opt.BatchSize
		p := r.newPending(first, min(r.opt.BatchSize, len(r.items)-first))
		if !r.queue(ctx, p) {
			return
		}
	}
}

// newPending allocates the batch of the n items from position first, all of them outstanding.
func (r *streamRun) newPending(first, n int) *pending {
	t := &r.opt.Transform
	p := &pending{first: first, n: n, done: make(chan struct{}), bad: make([]BadImage, n), ok: make([]bool, n)}
	p.batch = &Batch{X: make([]float32, n*r.elem), C: t.Channels, H: t.Size, W: t.Size}
	p.remaining.Store(int32(n))
	return p
}

// queue hands p to the collector, then each of its items to the workers; it reports false when ctx
// is cancelled first.
func (r *streamRun) queue(ctx context.Context, p *pending) bool {
	select {
	case r.batches <- p:
	case <-ctx.Done():
		return false
	}
	for slot := 0; slot < p.n; slot++ {
		select {
		case r.jobs <- job{p, slot}:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// work is one worker: it loads the items taken from jobs into their batch rows until jobs is closed
// or ctx is cancelled. A worker that cannot get a Processor marks every item it takes bad instead.
func (r *streamRun) work(ctx context.Context) {
	proc, err := NewProcessor()
	if err != nil {
		r.failJobs(err)
		return
	}
	defer proc.Close()
	var data []byte
	for j := range r.jobs {
		if ctx.Err() != nil {
			return
		}
		r.loadJob(proc, j, &data)
	}
}

// failJobs marks every item taken from jobs bad with err, until jobs is closed.
func (r *streamRun) failJobs(err error) {
	for j := range r.jobs {
		j.p.bad[j.slot] = BadImage{Index: j.p.first + j.slot, Path: r.items[j.p.first+j.slot].Path, Err: err}
		j.p.slotDone()
	}
}

// loadJob loads the item of j into its row of the batch (data is the worker's file buffer), adds
// the time taken to the batch and records whether the item is good or bad.
func (r *streamRun) loadJob(proc *Processor, j job, data *[]byte) {
	idx := j.p.first + j.slot
	it := r.items[idx]
	out := j.p.batch.X[j.slot*r.elem : (j.slot+1)*r.elem]
	t0 := time.Now()
	err := r.l.loadOne(proc, it, data, ItemRand(r.seed, idx), out)
	j.p.decode.Add(int64(time.Since(t0)))
	if err != nil {
		j.p.bad[j.slot] = BadImage{Index: idx, Path: it.Path, Err: err}
	} else {
		j.p.ok[j.slot] = true
	}
	j.p.slotDone()
}

// slotDone counts one slot of p as finished, and closes p.done after the last.
func (p *pending) slotDone() {
	if p.remaining.Add(-1) == 0 {
		close(p.done)
	}
}

// collect is the collector: it finishes batches in order and hands them out to Next, giving a
// token back per batch handed out. It closes s.out after the last batch, the first error, or when
// ctx is cancelled.
func (s *Stream) collect(ctx context.Context, r *streamRun) {
	defer close(s.out)
	for p := range r.batches {
		select {
		case <-p.done:
		case <-ctx.Done():
			return
		}
		b, err := finish(p, r.items, r.elem, r.opt.OnBad)
		s.addBad(b)
		select {
		case s.out <- result{b, err}:
		case <-ctx.Done():
			return
		}
		<-r.tokens
		if err != nil {
			return
		}
	}
}

// addBad adds the images b skipped to the stream's list (b is nil when the batch failed).
func (s *Stream) addBad(b *Batch) {
	if b != nil && len(b.Bad) > 0 {
		s.mu.Lock()
		s.bad = append(s.bad, b.Bad...)
		s.mu.Unlock()
	}
}

// finish compacts a batch: good rows first in item order, bad ones listed.
func finish(p *pending, items []Item, elem int, policy BadPolicy) (*Batch, error) {
	b := p.batch
	b.Labels = make([]int64, 0, p.n)
	b.Index = make([]int, 0, p.n)
	row := 0
	for slot := 0; slot < p.n; slot++ {
		if !p.ok[slot] {
			if policy == Fail {
				return nil, p.bad[slot]
			}
			b.Bad = append(b.Bad, p.bad[slot])
			continue
		}
		if row != slot {
			copy(b.X[row*elem:(row+1)*elem], b.X[slot*elem:(slot+1)*elem])
		}
		idx := p.first + slot
		b.Labels = append(b.Labels, items[idx].Label)
		b.Index = append(b.Index, idx)
		row++
	}
	b.N = row
	b.X = b.X[:row*elem]
	b.Decode = time.Duration(p.decode.Load())
	return b, nil
}

// loadOne reads one item (from the cache when it holds it) and writes its tensor.
func (l *Loader) loadOne(proc *Processor, it Item, data *[]byte, r *rand.Rand, out []float32) error {
	if c := l.opt.Cache; c != nil {
		if m, ok, err := c.Lookup(it.Path); ok {
			if err != nil {
				return err
			}
			return proc.TensorFromImage(m, &l.opt.Transform, r, it.Rotate, out)
		}
	}
	b, err := readFile(it.Path, *data)
	if err != nil {
		return err
	}
	*data = b
	return proc.Tensor(b, &l.opt.Transform, r, it.Rotate, l.opt.MaxPixels, out)
}

// readFile reads a file into buf (grown as needed).
func readFile(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, errors.New("is a directory")
	}
	n := int(st.Size())
	if cap(buf) < n+1 {
		buf = make([]byte, n+1)
	}
	buf = buf[:n+1]
	m, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) { // EOF: empty
		return nil, err
	}
	if m == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrCorrupt)
	}
	return buf[:m], nil
}

// Next returns the next batch, or io.EOF after the last one. With OnBad = Fail, a bad image ends the
// stream with an error naming the file.
func (s *Stream) Next() (*Batch, error) {
	if s.done {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	r, ok := <-s.out
	if !ok {
		s.done = true
		if err := s.ctx.Err(); err != nil {
			s.err = err
			return nil, err
		}
		return nil, io.EOF
	}
	if r.err != nil {
		s.done, s.err = true, r.err
		s.cancel()
		return nil, r.err
	}
	return r.b, nil
}

// Bad returns the images skipped so far.
func (s *Stream) Bad() []BadImage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BadImage(nil), s.bad...)
}

// Close stops the workers and waits for them.
func (s *Stream) Close() {
	s.cancel()
	for range s.out {
	}
	s.wg.Wait()
}

// Load loads items as a single batch in parallel (e.g. one episode) and returns it.
func (l *Loader) Load(ctx context.Context, items []Item, seed uint64) (*Batch, error) {
	opt := *l
	opt.opt.BatchSize = max(len(items), 1)
	opt.opt.Prefetch = 1
	s := opt.Stream(ctx, items, seed)
	defer s.Close()
	b, err := s.Next()
	if err == io.EOF {
		b = &Batch{C: l.opt.Transform.Channels, H: l.opt.Transform.Size, W: l.opt.Transform.Size}
		err = nil
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return b, err
}
