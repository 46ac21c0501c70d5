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
		trainPos, valPos = allPositions(len(d.Samples)), allPositions(len(dv.Samples))
		e.trainClasses = allPositions(len(d.Classes))
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

func (e *episodic) plan(r *rand.Rand, _ int) ([]int, uint64) {
	ep := e.sampler.Sample(r)
	return episodeOrder(ep, nil), r.Uint64()
}

func (e *episodic) source() Images { return e.src }

func (e *episodic) step(s *torch.Scope, idx []int, xs []float32) (stepResult, error) {
	c := &e.rs.cfg
	t0 := time.Now()
	n := len(idx)
	x := e.rs.input(s, xs, n)
	data := time.Since(t0)
	emb := e.rs.model.Embed(x, true)
	ns := int64(c.Way * c.Shot)
	protos := Prototypes(emb.Narrow(0, 0, ns), c.Way, c.Shot)
	logits := e.rs.metric.Logits(emb.Narrow(0, ns, int64(c.Way*c.Query)), protos)
	y := torch.FromInt64(s, e.target, int64(len(e.target)))
	if e.rs.dev != torch.CPU {
		y = y.ToDevice(e.rs.dev)
	}
	loss := torch.CrossEntropy(logits, y, 0, torch.ReduceMean)
	v, err := e.rs.backward(loss)
	if err != nil {
		return stepResult{loss: v}, err
	}
	acc, err := accuracy(logits, e.target)
	return stepResult{loss: v, acc: acc, images: n, data: data}, err
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
