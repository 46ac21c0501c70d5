package train

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

// recordingImages serves one float per sample (its position) and reports every load it starts.
type recordingImages struct {
	started chan []int
	release chan struct{} // when set, a load waits for it
}

func (f *recordingImages) Shape() (int, int) { return 1, 1 }

func (f *recordingImages) Load(ctx context.Context, idx []int, _ uint64) ([]float32, error) {
	f.started <- idx
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out := make([]float32, len(idx))
	for i, k := range idx {
		out[i] = float32(k)
	}
	return out, nil
}

// planOf draws 3 positions and a seed, like a task's plan.
func planOf(r *rand.Rand, step int) ([]int, uint64) {
	return []int{step, r.IntN(1000), r.IntN(1000)}, r.Uint64()
}

func TestPrefetchLoadsTheNextStepWhileThisOneRuns(t *testing.T) {
	pcg := rand.NewPCG(7, 7)
	rs := &runState{pcg: pcg, rng: rand.New(pcg)}
	src := &recordingImages{started: make(chan []int, 4)}
	p := newPrefetcher(rs, src, planOf, true)
	defer p.stop()

	// The draws a run without prefetching makes, step after step, and the generator's state before
	// each of them.
	refPCG := rand.NewPCG(7, 7)
	ref := rand.New(refPCG)
	var want [][]int
	var boundary [][]byte
	for step := range 3 {
		s, _ := refPCG.MarshalBinary()
		boundary = append(boundary, s)
		idx, _ := planOf(ref, step)
		want = append(want, idx)
	}

	ctx := context.Background()
	b, _, err := p.next(ctx, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-src.started; got[0] != 0 {
		t.Fatalf("first load was for step %d", got[0])
	}
	// The load of step 1 starts before anyone asks for it.
	if got := <-src.started; got[0] != 1 {
		t.Fatalf("prefetched load was for step %d, want 1", got[0])
	}
	if !slices.Equal(b.idx, want[0]) || b.xs[1] != float32(want[0][1]) {
		t.Fatalf("step 0 batch %v (images %v), want %v", b.idx, b.xs, want[0])
	}
	// A checkpoint after step 0 holds the state before step 1's draw, not after it.
	st, err := p.rngState()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st, boundary[1]) {
		t.Fatal("checkpoint generator state includes the prefetched draw")
	}
	b1, _, err := p.next(ctx, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	<-src.started // step 2's prefetch
	if !slices.Equal(b1.idx, want[1]) {
		t.Fatalf("step 1 batch %v, want %v", b1.idx, want[1])
	}
	// Abandoning step 1 drops step 2's prefetch and returns the generator to before step 1.
	if err := p.rewind(b1); err != nil {
		t.Fatal(err)
	}
	if st, _ := p.rngState(); !bytes.Equal(st, boundary[1]) {
		t.Fatal("rewind did not restore the state before step 1")
	}
	b1again, _, err := p.next(ctx, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	<-src.started
	if !slices.Equal(b1again.idx, want[1]) {
		t.Fatalf("step 1 after rewind %v, want %v", b1again.idx, want[1])
	}
	if p.pending != nil {
		t.Fatal("the last step prefetched a step beyond the run")
	}
	select {
	case idx := <-src.started:
		t.Fatalf("unexpected load %v", idx)
	default:
	}
}

func TestPrefetchStopCancelsAPendingLoad(t *testing.T) {
	pcg := rand.NewPCG(1, 2)
	rs := &runState{pcg: pcg, rng: rand.New(pcg)}
	src := &recordingImages{started: make(chan []int, 4), release: make(chan struct{})}
	p := newPrefetcher(rs, src, planOf, true)
	go func() { <-src.started; src.release <- struct{}{} }() // step 0 loads; step 1 then blocks
	if _, _, err := p.next(context.Background(), 0, false); err != nil {
		t.Fatal(err)
	}
	<-src.started
	p.stop() // returns only once the blocked load has seen its cancellation
	if p.pending != nil {
		t.Fatal("stop left a pending batch")
	}
}
