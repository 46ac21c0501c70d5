package train

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"protoherb/nn"
	"protoherb/torch"
)

// distRun is the data-parallel side of a run, with PyTorch DDP's semantics: rank 0's starting state
// (fresh, --init or resumed) is broadcast; every rank draws the whole step from the run's generator
// and takes its share (images of a batch, episodes of a step); the loss and the gradients are
// averaged across ranks every step (gradients in buckets, all-reduced during backward by c10d's
// Reducer, or after it where the Reducer cannot be built), so a step is the same whatever the world
// size; rank 0 alone validates and writes. Every rank votes at every step whether to stop, so an
// interruption of any rank stops them all at the same step. Batch norm keeps per-rank statistics.
//
// A collective that fails (a rank died) or times out (a rank hangs) ends the run with an error
// naming the silent ranks, found from heartbeats each rank keeps in the job's store.
type distRun struct {
	g *torch.Group
	// reducer overlaps the gradients' all-reduce with backward; built at the first step, nil (with
	// afterBackward set) where libtorch refuses it: then the gradients are averaged after backward.
	reducer       *torch.Reducer
	afterBackward bool
	stopBeat      context.CancelFunc
	beating       sync.WaitGroup
}

// heartbeat is how often a rank bumps its counter in the store; silence is judged over silentAfter.
const (
	heartbeat   = 500 * time.Millisecond
	silentAfter = 2 * time.Second
)

func newDistRun(g *torch.Group) *distRun {
	if g == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &distRun{g: g, stopBeat: cancel}
	d.beating.Add(1)
	go d.beat(ctx)
	return d
}

func (d *distRun) close() {
	if d.reducer != nil {
		d.reducer.Close()
	}
	d.stopBeat()
	d.beating.Wait()
}

func (d *distRun) beat(ctx context.Context) {
	defer d.beating.Done()
	key := fmt.Sprintf("heartbeat/%d", d.g.Rank())
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		_, _ = d.g.StoreAdd(key, 1)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fault turns a failed collective into an error naming the ranks that stopped beating.
func (d *distRun) fault(op string, err error) error {
	me, n := d.g.Rank(), d.g.Size()
	read := func() ([]int64, error) {
		v := make([]int64, n)
		for r := range n {
			var err error
			if v[r], err = d.g.StoreAdd(fmt.Sprintf("heartbeat/%d", r), 0); err != nil {
				return nil, err
			}
		}
		return v, nil
	}
	before, rerr := read()
	if rerr == nil {
		time.Sleep(silentAfter)
		var after []int64
		if after, rerr = read(); rerr == nil {
			var silent []int
			for r := range n {
				if r != me && after[r] == before[r] {
					silent = append(silent, r)
				}
			}
			if len(silent) > 0 {
				return fmt.Errorf("rank %d: %s failed: rank %v stopped (no heartbeat for %v): it died or hangs: %w", me, op, silent, silentAfter, err)
			}
			return fmt.Errorf("rank %d: %s failed while every rank still beats (one failed on its own, or hangs in libtorch): %w", me, op, err)
		}
	}
	return fmt.Errorf("rank %d: %s failed: rank 0, which serves the job's store, is gone (%v): %w", me, op, rerr, err)
}

// localPlan wraps a task's plan: every rank draws the whole step and keeps its share of the units
// (whole images or episodes), rank r the r-th of Size equal parts. Augmentation seeds differ by rank.
func (d *distRun) localPlan(plan func(*rand.Rand, int) ([]int, uint64), unit int) func(*rand.Rand, int) ([]int, uint64) {
	r, n := d.g.Rank(), d.g.Size()
	return func(rng *rand.Rand, step int) ([]int, uint64) {
		idx, seed := plan(rng, step)
		units := len(idx) / unit
		lo, hi := r*units/n, (r+1)*units/n
		if r > 0 {
			seed ^= uint64(r) * 0x9E3779B97F4A7C15
		}
		return idx[lo*unit : hi*unit], seed
	}
}

// check verifies that the step divides evenly across the ranks.
func (d *distRun) check(c *Config) error {
	n := d.g.Size()
	switch {
	case c.Mode == ModePretrain && c.BatchSize%n != 0:
		return fmt.Errorf("--batch-size %d is the global batch: it must be a multiple of the world size %d", c.BatchSize, n)
	case c.Mode == ModeEpisodic && c.EpisodesPerStep%n != 0:
		return fmt.Errorf("--episodes-per-step %d must be a multiple of the world size %d (each rank takes an equal share of a step's episodes)", c.EpisodesPerStep, n)
	}
	return nil
}

// vote returns whether any rank wants to stop.
func (d *distRun) vote(stop bool) (bool, error) {
	v := 0.0
	if stop {
		v = 1
	}
	t := torch.FromFloat64(nil, []float64{v}, 1)
	defer t.Free()
	if err := d.g.AllReduce([]*torch.Tensor{t}, torch.DistMax, false, 0); err != nil {
		return false, d.fault("the stop vote", err)
	}
	r, err := t.Item()
	return r != 0, err
}

// meanLoss averages a step's loss over the ranks.
func (d *distRun) meanLoss(v float64) (float64, error) {
	t := torch.FromFloat64(nil, []float64{v}, 1)
	defer t.Free()
	if err := d.g.AllReduce([]*torch.Tensor{t}, torch.DistSum, true, 0); err != nil {
		return v, d.fault("averaging the loss", err)
	}
	return t.Item()
}

// prepare arms the overlapped all-reduce of ps's gradients for the backward of loss, building the
// Reducer at the first call (ps must stay the same for the run). It reports whether backward will
// average the gradients; when not, averageGrads must after it. The Reducer's construction involves
// no other rank and fails (if at all) on every rank alike, as the ranks hold the same model.
func (d *distRun) prepare(ps []*torch.Tensor, loss *torch.Tensor) (bool, error) {
	if d.afterBackward {
		return false, nil
	}
	if d.reducer == nil {
		r, err := d.g.NewReducer(ps, torch.DefaultBucketBytes)
		if err != nil || r == nil {
			slog.Warn("train: the gradients' all-reduce cannot overlap backward here: averaging them after backward", "err", err)
			d.afterBackward = true
			return false, nil
		}
		d.reducer = r
	}
	if err := d.reducer.Prepare(loss); err != nil {
		return false, d.fault("preparing the gradients' all-reduce", err)
	}
	return true, nil
}

// averageGrads averages the gradients of ps over the ranks.
func (d *distRun) averageGrads(ps []*torch.Tensor) error {
	if err := d.g.AverageGrads(ps, torch.DefaultBucketBytes); err != nil {
		return d.fault("averaging the gradients", err)
	}
	return nil
}

// broadcastBytes returns rank 0's b on every rank.
func (d *distRun) broadcastBytes(b []byte) ([]byte, error) {
	n := torch.FromInt64(nil, []int64{int64(len(b))}, 1)
	defer n.Free()
	if err := d.g.Broadcast([]*torch.Tensor{n}, 0); err != nil {
		return nil, err
	}
	size, err := n.Item()
	if err != nil || size == 0 {
		return nil, err
	}
	if d.g.Rank() != 0 {
		b = make([]byte, int(size))
	}
	t := torch.FromUint8(nil, b, int64(len(b)))
	defer t.Free()
	if err := d.g.Broadcast([]*torch.Tensor{t}, 0); err != nil {
		return nil, err
	}
	return t.Uint8s()
}

// syncState is what rank 0 sends besides the weights: where the run stands.
type syncState struct {
	Step      int    `json:"step"`
	Generator []byte `json:"generator"`
	Optimizer []byte `json:"optimizer"`
	World     int    `json:"world"` // the world size of the checkpoint resumed from (0: fresh)
}

// sync gives every rank rank 0's weights, optimizer state, step and generator.
func (rs *runState) sync(resumedWorld int) error {
	d := rs.dist
	if err := d.g.Broadcast(nn.Tensors(rs.weights()), 0); err != nil {
		return d.fault("broadcasting rank 0's weights", err)
	}
	var st syncState
	var blob []byte
	if d.g.Rank() == 0 {
		var err error
		st = syncState{Step: rs.step, World: resumedWorld}
		if st.Generator, err = rs.pcg.MarshalBinary(); err != nil {
			return err
		}
		if st.Optimizer, err = rs.opt.State(); err != nil {
			return fmt.Errorf("optimizer state: %w", err)
		}
		if blob, err = json.Marshal(st); err != nil {
			return err
		}
	}
	blob, err := d.broadcastBytes(blob)
	if err != nil {
		return d.fault("broadcasting rank 0's state", err)
	}
	if d.g.Rank() == 0 {
		if st.World > 0 && st.World != d.g.Size() {
			slog.Warn("train: resuming with another world size: the steps stay the same, their summation order changes", "checkpoint_world", st.World, "world", d.g.Size())
		}
		return nil
	}
	if err := json.Unmarshal(blob, &st); err != nil {
		return fmt.Errorf("rank 0's state: %w", err)
	}
	rs.step = st.Step
	if err := rs.pcg.UnmarshalBinary(st.Generator); err != nil {
		return fmt.Errorf("rank 0's generator: %w", err)
	}
	if len(st.Optimizer) > 0 {
		if err := rs.opt.LoadState(st.Optimizer); err != nil {
			return fmt.Errorf("rank 0's optimizer state: %w", err)
		}
	}
	return nil
}

// lead reports whether this process writes the run's files and validates: rank 0, or the only one.
func (rs *runState) lead() bool { return rs.dist == nil || rs.dist.g.Rank() == 0 }

// worldSize is the number of ranks (1 without a group).
func (rs *runState) worldSize() int {
	if rs.dist == nil {
		return 1
	}
	return rs.dist.g.Size()
}
