package train

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"protoherb/dataset"
	"protoherb/nn"
	"protoherb/progress"
	"protoherb/torch"
)

// episodic is prototypical-network training: each step is one N-way K-shot Q-query episode drawn from
// every training class with at least K+Q images.
type episodic struct {
	rs                *runState
	d, dv             *dataset.Dataset
	src, vsrc         Images
	sampler, vsampler *dataset.EpisodeSampler
	target            []int64
	bar               progress.Options
	trainClasses      []int
}

// newEpisodic opens the data (validation: --val-split, else --val-frac of the classes held out),
// builds the image sources and the model.
func newEpisodic(ctx context.Context, rs *runState, bar progress.Options) (*episodic, error) {
	c := &rs.cfg
	d, err := dataset.Open(c.Data, dataset.Options{Format: c.Format, Split: c.Split})
	if err != nil {
		return nil, err
	}
	e := &episodic{rs: rs, d: d, bar: bar}
	var trainPos, valPos []int
	if c.ValSplit != "" {
		dv, err := dataset.Open(c.Data, dataset.Options{Format: c.Format, Split: c.ValSplit})
		if err != nil {
			return nil, err
		}
		e.dv = dv
		trainPos, valPos = dataset.Positions(len(d.Samples)), dataset.Positions(len(dv.Samples))
		e.trainClasses = dataset.Positions(len(d.Classes))
	} else {
		tr, held := dataset.ClassSplit(d, c.ValFrac, c.Seed)
		e.trainClasses = tr
		trainPos, valPos = d.SamplesOfClasses(tr), d.SamplesOfClasses(held)
		if len(held) > 0 {
			e.dv = d
		}
	}
	needed := trainPos
	if e.dv == d {
		needed = append(append([]int(nil), trainPos...), valPos...)
	}
	if e.src, err = newImagesFor(ctx, c, d, needed, c.Augment, bar); err != nil {
		return nil, err
	}
	trainPos = usablePositions(e.src, trainPos)
	if e.sampler, err = dataset.NewEpisodeSampler(d, trainPos, c.Way, c.Shot, c.Query); err != nil {
		return nil, fmt.Errorf("train: %s: %w", c.Data, err)
	}
	if e.dv != nil && c.EvalEvery > 0 && c.EvalEpisodes > 0 {
		e.vsrc = e.src
		if e.dv != d || c.Augment {
			if e.vsrc, err = newImagesFor(ctx, c, e.dv, valPos, false, bar); err != nil {
				return nil, err
			}
		}
		valPos = usablePositions(e.vsrc, valPos)
		if e.vsampler, err = dataset.NewEpisodeSampler(e.dv, valPos, c.TestWay, c.TestShot, c.TestQuery); err != nil {
			slog.Warn("train: no validation", "err", err)
			e.vsampler = nil
		}
	}
	slog.Info("train: episodes", "classes", len(e.sampler.Eligible()), "way", c.Way, "shot", c.Shot, "query", c.Query,
		"validation_classes", func() int {
			if e.vsampler == nil {
				return 0
			}
			return len(e.vsampler.Eligible())
		}())
	if rs.model, err = nn.New(modelConfig(c, 0, rs.dev)); err != nil {
		return nil, err
	}
	if rs.metric, err = newMetric(c.Distance, rs.dev); err != nil {
		return nil, err
	}
	e.target = make([]int64, c.Way*c.Query)
	for i := range e.target {
		e.target[i] = int64(i / c.Query)
	}
	return e, nil
}

// plan draws the step's episodes (EpisodesPerStep of them), one after another.
func (e *episodic) plan(r *rand.Rand, _ int) ([]int, uint64) {
	var idx []int
	for range max(e.rs.cfg.EpisodesPerStep, 1) {
		idx = episodeOrder(e.sampler.Sample(r), idx)
	}
	return idx, r.Uint64()
}

// unit is the samples of one episode: a distributed step splits its episodes across the ranks.
func (e *episodic) unit() int { c := &e.rs.cfg; return c.Way * (c.Shot + c.Query) }

func (e *episodic) source() Images { return e.src }

// step runs the episodes of idx (this rank's share of the step's episodes): the loss is their mean.
func (e *episodic) step(s *torch.Scope, idx []int, xs []float32) (stepResult, error) {
	c := &e.rs.cfg
	t0 := time.Now()
	n := len(idx)
	x := e.rs.input(s, xs, n)
	data := time.Since(t0)
	emb := e.rs.model.Embed(x, e.rs.trainMode)
	y := torch.FromInt64(s, e.target, int64(len(e.target)))
	if e.rs.dev != torch.CPU {
		y = y.ToDevice(e.rs.dev)
	}
	per, ns, nq := int64(e.unit()), int64(c.Way*c.Shot), int64(c.Way*c.Query)
	episodes := int64(n) / per
	var loss *torch.Tensor
	var logits []*torch.Tensor
	for k := range episodes {
		ep := emb.Narrow(0, k*per, per)
		protos := Prototypes(ep.Narrow(0, 0, ns), c.Way, c.Shot)
		lg := e.rs.metric.Logits(ep.Narrow(0, ns, nq), protos)
		l := torch.CrossEntropy(lg, y, 0, torch.ReduceMean)
		if loss == nil {
			loss = l
		} else {
			loss = loss.Add(l)
		}
		logits = append(logits, lg)
	}
	if episodes > 1 {
		loss = loss.MulScalar(1 / float64(episodes))
	}
	v, err := e.rs.backward(loss)
	if err != nil {
		return stepResult{loss: v}, err
	}
	var acc float64
	for _, lg := range logits {
		a, err := accuracy(lg, e.target)
		if err != nil {
			return stepResult{loss: v}, err
		}
		acc += a / float64(len(logits))
	}
	return stepResult{loss: v, acc: acc, images: n, data: data}, nil
}

// episodeOrder lists an episode's samples class-major: all support images, then all queries.
func episodeOrder(ep dataset.Episode, out []int) []int {
	for _, s := range ep.Support {
		out = append(out, s...)
	}
	for _, q := range ep.Query {
		out = append(out, q...)
	}
	return out
}

func (e *episodic) validate(ctx context.Context) (map[string]float64, float64, bool, error) {
	if e.vsampler == nil {
		return nil, 0, false, nil
	}
	c := &e.rs.cfg
	st, err := EvalEpisodes(ctx, e.rs.model, c.Distance, e.vsrc, e.vsampler, c.EvalEpisodes, c.Seed^0x5a1d, nil)
	if err != nil {
		return nil, 0, false, err
	}
	return map[string]float64{"acc": st.Acc, "acc_ci95": st.CI95, "way": float64(c.TestWay), "shot": float64(c.TestShot)}, st.Acc, true, nil
}

func (e *episodic) classes() json.RawMessage { return classList(e.d, e.trainClasses) }

func (e *episodic) epoch(int) int { return 0 }

func (e *episodic) close() {}

// classList is the JSON list of a dataset's classes at positions idx: [{"index","id","name"}, ...].
func classList(d *dataset.Dataset, idx []int) json.RawMessage {
	type cl struct {
		Index int    `json:"index"`
		ID    int64  `json:"id"`
		Name  string `json:"name"`
	}
	out := make([]cl, len(idx))
	for i, k := range idx {
		out[i] = cl{Index: i, ID: d.Classes[k].ID, Name: d.Classes[k].Name}
	}
	b, _ := json.Marshal(out)
	return b
}
