package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"protoherb/checkpoint"
	"protoherb/dataset"
	"protoherb/nn"
	"protoherb/progress"
	"protoherb/torch"
)

// EpisodeStats is the accuracy over a set of evaluation episodes.
type EpisodeStats struct {
	Episodes int
	// Acc is the mean per-episode query accuracy; CI95 the half-width of its 95% confidence interval
	// (1.96 · sample standard deviation / √episodes).
	Acc, CI95 float64
}

func (s EpisodeStats) String() string {
	return fmt.Sprintf("%.2f%% ± %.2f%% (95%% CI, %d episodes)", 100*s.Acc, 100*s.CI95, s.Episodes)
}

// embedBatch is the number of images embedded at once during evaluation.
const embedBatch = 256

// EvalEpisodes measures N-way K-shot accuracy over episodes drawn by sampler with a generator seeded
// from seed (the same episodes every call). The model runs in eval mode, so an image's embedding does
// not depend on its batch: every distinct image of all episodes is embedded once, then each episode
// is scored on the embeddings (nearest prototype by squared euclidean distance, or by cosine).
func EvalEpisodes(ctx context.Context, m *nn.Model, distance string, src Images, sampler *dataset.EpisodeSampler,
	episodes int, seed uint64, bar *progress.Bar) (EpisodeStats, error) {
	return evalEpisodes(ctx, m, distance, src, sampler, episodes, seed, bar, &embeddings{pos: map[int]int{}})
}

// embeddings caches the eval-mode embeddings of sample positions, as rows of a flat slice.
type embeddings struct {
	pos map[int]int // sample position → row
	emb []float64
	dim int
}

func evalEpisodes(ctx context.Context, m *nn.Model, distance string, src Images, sampler *dataset.EpisodeSampler,
	episodes int, seed uint64, bar *progress.Bar, cache *embeddings) (EpisodeStats, error) {
	if episodes < 1 {
		return EpisodeStats{}, fmt.Errorf("evaluation: need at least one episode")
	}
	r := rand.New(rand.NewPCG(seed, 0xe7a1))
	eps := make([]dataset.Episode, episodes)
	seen := map[int]bool{}
	var todo []int
	for i := range eps {
		eps[i] = sampler.Sample(r)
		for _, group := range [][][]int{eps[i].Support, eps[i].Query} {
			for _, cls := range group {
				for _, p := range cls {
					if _, ok := cache.pos[p]; !ok && !seen[p] {
						seen[p] = true
						todo = append(todo, p)
					}
				}
			}
		}
	}
	if err := cache.add(ctx, m, src, todo, bar); err != nil {
		return EpisodeStats{}, err
	}
	accs := make([]float64, episodes)
	for i, ep := range eps {
		accs[i] = scoreEpisode(ep, cache.emb, cache.dim, cache.pos, distance)
	}
	return statsOf(accs), nil
}

// add embeds the images at positions order (eval mode, no gradients) into the cache.
func (e *embeddings) add(ctx context.Context, m *nn.Model, src Images, order []int, bar *progress.Bar) error {
	c, s := src.Shape()
	e.dim = m.EmbedDim()
	dim := e.dim
	var err error
	torch.NoGrad(func() {
		sc := torch.NewScope()
		defer sc.Close()
		for start := 0; start < len(order); start += embedBatch {
			if err = ctx.Err(); err != nil {
				return
			}
			idx := order[start:min(start+embedBatch, len(order))]
			var xs []float32
			if xs, err = src.Load(ctx, idx, 0); err != nil {
				return
			}
			x := torch.FromFloat32On(sc, m.Config.Device, xs, int64(len(idx)), int64(c), int64(s), int64(s))
			y := m.Embed(x, false)
			if y.Device() != torch.CPU {
				y = y.ToDevice(torch.CPU)
			}
			var v []float32
			if v, err = y.Float32s(); err != nil {
				err = fmt.Errorf("embedding: %w", err)
				return
			}
			for i, p := range idx {
				e.pos[p] = len(e.emb) / dim
				for _, f := range v[i*dim : (i+1)*dim] {
					e.emb = append(e.emb, float64(f))
				}
			}
			sc.Reset()
			bar.Add(len(idx))
		}
	})
	return err
}

// scoreEpisode returns the query accuracy of one episode on precomputed embeddings.
func scoreEpisode(ep dataset.Episode, emb []float64, dim int, pos map[int]int, distance string) float64 {
	way := len(ep.Classes)
	protos := make([]float64, way*dim)
	for c, sup := range ep.Support {
		p := protos[c*dim : (c+1)*dim]
		for _, s := range sup {
			row := emb[pos[s]*dim : (pos[s]+1)*dim]
			for k, v := range row {
				p[k] += v
			}
		}
		for k := range p {
			p[k] /= float64(len(sup))
		}
		if distance == "cosine" {
			normalize(p)
		}
	}
	right, total := 0, 0
	q := make([]float64, dim)
	for c, qs := range ep.Query {
		for _, s := range qs {
			copy(q, emb[pos[s]*dim:(pos[s]+1)*dim])
			if distance == "cosine" {
				normalize(q)
			}
			best, bestScore := -1, math.Inf(1)
			for j := 0; j < way; j++ {
				p := protos[j*dim : (j+1)*dim]
				var score float64
				if distance == "cosine" {
					for k := range q {
						score -= q[k] * p[k]
					}
				} else {
					for k := range q {
						d := q[k] - p[k]
						score += d * d
					}
				}
				if score < bestScore {
					best, bestScore = j, score
				}
			}
			if best == c {
				right++
			}
			total++
		}
	}
	if total == 0 {
		return 0
	}
	return float64(right) / float64(total)
}

func normalize(v []float64) {
	var n float64
	for _, x := range v {
		n += x * x
	}
	n = math.Sqrt(n)
	if n < 1e-12 {
		return
	}
	for i := range v {
		v[i] /= n
	}
}

// statsOf returns the mean and 95% confidence half-width of per-episode accuracies.
func statsOf(accs []float64) EpisodeStats {
	n := float64(len(accs))
	var sum float64
	for _, a := range accs {
		sum += a
	}
	mean := sum / n
	var ss float64
	for _, a := range accs {
		ss += (a - mean) * (a - mean)
	}
	ci := 0.0
	if len(accs) > 1 {
		ci = 1.96 * math.Sqrt(ss/(n-1)) / math.Sqrt(n)
	}
	return EpisodeStats{Episodes: len(accs), Acc: mean, CI95: ci}
}

// FewShotOptions configure FewShot.
type FewShotOptions struct {
	// Model is a checkpoint folder or a run directory (its best checkpoint, else its latest).
	Model               string
	Data, Format, Split string
	// Ways and Shots: every combination is evaluated, sharing one embedding of each image.
	Ways, Shots []int
	Query       int
	Episodes    int
	Seed        uint64
	Device      string
	InMemory    string // auto | true | false
	Workers     int
	Bar         progress.Options
}

// FewShotResult is FewShot's answer.
type FewShotResult struct {
	Checkpoint string
	Tasks      []FewShotTask
}

// FewShotTask is the accuracy of one way/shot combination.
type FewShotTask struct {
	Way, Shot int
	Classes   int // classes eligible for its episodes
	Stats     EpisodeStats
}

// FewShot evaluates a trained model on N-way K-shot episodes of a dataset split. The image pipeline
// (size, channels, inversion) and the distance are those the model was trained with.
func FewShot(ctx context.Context, o FewShotOptions) (FewShotResult, error) {
	if len(o.Ways) == 0 || len(o.Shots) == 0 || slices.Min(o.Ways) < 2 || slices.Min(o.Shots) < 1 || o.Query < 1 || o.Episodes < 1 {
		return FewShotResult{}, fmt.Errorf("fewshot: need way >= 2, shot >= 1, query >= 1, episodes >= 1")
	}
	dev, err := torch.ParseDevice(o.Device)
	if err != nil {
		return FewShotResult{}, err
	}
	ckPath, err := resolveCheckpoint(o.Model)
	if err != nil {
		return FewShotResult{}, fmt.Errorf("fewshot: --model: %w", err)
	}
	if st, err := os.Stat(ckPath); err != nil || !st.IsDir() {
		return FewShotResult{}, fmt.Errorf("fewshot: --model %s: want a checkpoint folder or a run directory (the model's config lives in its state.json)", o.Model)
	}
	ck, err := checkpoint.Load(ckPath)
	if err != nil {
		return FewShotResult{}, err
	}
	defer ck.Free()
	var cfg Config
	if err := json.Unmarshal(ck.Config, &cfg); err != nil || cfg.Backbone == "" {
		return FewShotResult{}, fmt.Errorf("fewshot: %s: no protoherb run config in %s", ckPath, checkpoint.StateFile)
	}
	m, err := nn.New(modelConfig(&cfg, 0, dev))
	if err != nil {
		return FewShotResult{}, fmt.Errorf("fewshot: %s: %w", ckPath, err)
	}
	defer m.Close()
	if _, err := nn.LoadTrained(m.State(), ck.WeightMap(), ckPath); err != nil {
		return FewShotResult{}, fmt.Errorf("fewshot: %s: %w", ckPath, err)
	}
	distance := cfg.Distance
	if cfg.Mode == ModePretrain || distance == "" {
		distance = "euclidean"
	}
	d, err := dataset.Open(o.Data, dataset.Options{Format: o.Format, Split: o.Split})
	if err != nil {
		return FewShotResult{}, err
	}
	iopt := cfg.imageOptions(o.Workers, o.Bar)
	iopt.Augment = false
	iopt.InMemory = o.InMemory == "true" || ((o.InMemory == "auto" || o.InMemory == "") && fitsInMemory(d, nil, iopt))
	src, err := NewImages(ctx, d, nil, iopt)
	if err != nil {
		return FewShotResult{}, err
	}
	positions := usablePositions(src, dataset.Positions(len(d.Samples)))
	res := FewShotResult{Checkpoint: filepath.Clean(ckPath)}
	cache := &embeddings{pos: map[int]int{}}
	bar := progress.New(-1, "embed test images", withUnit(o.Bar, "img"))
	defer bar.Finish()
	for _, way := range o.Ways {
		for _, shot := range o.Shots {
			sampler, err := dataset.NewEpisodeSampler(d, positions, way, shot, o.Query)
			if err != nil {
				return res, fmt.Errorf("fewshot: %s split %s: %w", o.Data, o.Split, err)
			}
			st, err := evalEpisodes(ctx, m, distance, src, sampler, o.Episodes, o.Seed, bar, cache)
			if err != nil {
				return res, err
			}
			res.Tasks = append(res.Tasks, FewShotTask{Way: way, Shot: shot, Classes: len(sampler.Eligible()), Stats: st})
		}
	}
	return res, nil
}
