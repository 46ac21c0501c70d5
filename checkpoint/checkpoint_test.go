package checkpoint

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"protoherb/nn"
	"protoherb/torch"
)

var tinyCfg = nn.Config{Backbone: "conv4", InChannels: 1, ImageSize: 16, NumClasses: 4}

// run is a tiny training run: a conv4 classifier on random data drawn from a Go PCG, with input
// noise from libtorch's generator (so both generators matter), trained with Adam.
type run struct {
	model *nn.Model
	opt   *torch.Optimizer
	pcg   *rand.PCG
	rng   *rand.Rand
	scope *torch.Scope
}

func newRun(t *testing.T, seed uint64) *run {
	t.Helper()
	if err := torch.ManualSeed(seed); err != nil {
		t.Fatal(err)
	}
	m, err := nn.New(tinyCfg)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := torch.NewAdam(nn.Tensors(m.Parameters()), torch.AdamOptions{LR: 1e-2})
	if err != nil {
		t.Fatal(err)
	}
	pcg := rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
	return &run{model: m, opt: opt, pcg: pcg, rng: rand.New(pcg), scope: torch.NewScope()}
}

func (r *run) close() {
	r.scope.Close()
	r.opt.Close()
	r.model.Close()
}

func (r *run) step(t *testing.T) float64 {
	t.Helper()
	defer r.scope.Reset()
	const n = 8
	xs := make([]float32, n*16*16)
	for i := range xs {
		xs[i] = float32(r.rng.NormFloat64())
	}
	ys := make([]int64, n)
	for i := range ys {
		ys[i] = int64(r.rng.IntN(4))
	}
	x := torch.FromFloat32(r.scope, xs, n, 1, 16, 16)
	noise := torch.Randn(r.scope, torch.Float32, torch.CPU, n, 1, 16, 16).MulScalar(0.1)
	loss := torch.CrossEntropy(r.model.Logits(x.Add(noise), true), torch.FromInt64(r.scope, ys, n), 0, torch.ReduceMean)
	if err := r.opt.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	if err := r.opt.Step(); err != nil {
		t.Fatal(err)
	}
	v, err := loss.Item()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (r *run) checkpoint(t *testing.T, step int) *Checkpoint {
	t.Helper()
	opt, err := r.opt.State()
	if err != nil {
		t.Fatal(err)
	}
	trng, err := torch.RNGState()
	if err != nil {
		t.Fatal(err)
	}
	grng, err := r.pcg.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return &Checkpoint{Step: step, Epoch: 1, Weights: r.model.State(), OptimizerState: opt, TorchRNG: trng, GoRNG: grng,
		Config: json.RawMessage(`{"backbone":"conv4","lr":0.01}`), Classes: json.RawMessage(`[{"id":3,"name":"Acer"}]`),
		Metrics: map[string]float64{"loss": 1.5, "diverged": math.Inf(1)}}
}

// TestInterruptedResume: a run interrupted after step k and resumed from its checkpoint gives the
// same losses at steps k+1..k+10 as an uninterrupted run with the same seed.
func TestInterruptedResume(t *testing.T) {
	const k, more = 3, 10
	const seed = 7
	a := newRun(t, seed)
	var want []float64
	for range k + more {
		want = append(want, a.step(t))
	}
	a.close()

	dir := t.TempDir()
	b := newRun(t, seed)
	for i := range k {
		if got := b.step(t); got != want[i] {
			t.Fatalf("step %d: %v, uninterrupted %v (not deterministic)", i+1, got, want[i])
		}
	}
	if _, err := Save(dir, b.checkpoint(t, k), 3); err != nil {
		t.Fatal(err)
	}
	b.close() // interruption: everything dropped

	c := newRun(t, 12345) // fresh process state: different weights and generators until restored
	ck, path, err := LoadLatest(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Free()
	if filepath.Base(path) != Name(k) || ck.Step != k {
		t.Fatalf("loaded %s step %d", path, ck.Step)
	}
	if _, err := nn.LoadInto(c.model.State(), ck.WeightMap(), true); err != nil {
		t.Fatal(err)
	}
	if err := c.opt.LoadState(ck.OptimizerState); err != nil {
		t.Fatal(err)
	}
	if err := torch.SetRNGState(ck.TorchRNG); err != nil {
		t.Fatal(err)
	}
	if err := c.pcg.UnmarshalBinary(ck.GoRNG); err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for i := k; i < k+more; i++ {
		if got := c.step(t); got != want[i] {
			t.Errorf("step %d after resume: loss %v, uninterrupted %v", i+1, got, want[i])
		}
	}
}

func saveTiny(t *testing.T, dir string, step int) string {
	t.Helper()
	r := newRun(t, uint64(step))
	defer r.close()
	r.step(t)
	p, err := Save(dir, r.checkpoint(t, step), 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTripAndKeepLast(t *testing.T) {
	dir := t.TempDir()
	r := newRun(t, 1)
	defer r.close()
	r.step(t)
	orig := r.checkpoint(t, 10)
	for _, s := range []int{10, 20, 30, 40} {
		orig.Step = s
		if _, err := Save(dir, orig, 2); err != nil {
			t.Fatal(err)
		}
	}
	steps, _ := Steps(dir)
	if !slices.Equal(steps, []int{40, 30}) {
		t.Errorf("kept %v, want [40 30]", steps)
	}
	// Same step again replaces it.
	if _, err := Save(dir, orig, 2); err != nil {
		t.Fatal(err)
	}
	got, path, err := LoadLatest(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Free()
	if filepath.Base(path) != Name(40) || got.Step != 40 || got.Epoch != 1 {
		t.Errorf("loaded %s step %d epoch %d", path, got.Step, got.Epoch)
	}
	if !slices.Equal(got.OptimizerState, orig.OptimizerState) || !slices.Equal(got.TorchRNG, orig.TorchRNG) ||
		!slices.Equal(got.GoRNG, orig.GoRNG) || string(got.Config) != string(orig.Config) || string(got.Classes) != string(orig.Classes) {
		t.Error("state differs after round trip")
	}
	if got.Metrics["loss"] != 1.5 || !math.IsInf(got.Metrics["diverged"], 1) {
		t.Errorf("metrics %v", got.Metrics)
	}
	if len(got.Weights) != len(orig.Weights) {
		t.Fatalf("%d weights, want %d", len(got.Weights), len(orig.Weights))
	}
	for i, p := range orig.Weights {
		q := got.Weights[i]
		if q.Name != p.Name || q.T.DType() != p.T.DType() || !slices.Equal(q.T.Shape(), p.T.Shape()) {
			t.Fatalf("weight %d: %s %v vs %s %v", i, q.Name, q.T, p.Name, p.T)
		}
		eq := q.T.Eq(p.T).ToDType(torch.Float64)
		s := eq.Sum(false)
		v, _ := s.Item()
		if int64(v) != p.T.Numel() {
			t.Errorf("%s not bit-exact", p.Name)
		}
		s.Free()
		eq.Free()
	}
	// Best slot.
	orig.Step = 25
	if _, err := SaveBest(dir, orig); err != nil {
		t.Fatal(err)
	}
	orig.Step = 35
	if _, err := SaveBest(dir, orig); err != nil {
		t.Fatal(err)
	}
	best, _, err := LoadBest(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer best.Free()
	if best.Step != 35 {
		t.Errorf("best step %d", best.Step)
	}
	if _, _, err := LoadBest(t.TempDir()); !errors.Is(err, ErrNone) {
		t.Errorf("LoadBest on an empty dir: %v", err)
	}
	if steps, _ := Steps(dir); !slices.Equal(steps, []int{40, 30}) {
		t.Errorf("best slot disturbed the step checkpoints: %v", steps)
	}
}

func TestCorruptFallsBack(t *testing.T) {
	dir := t.TempDir()
	saveTiny(t, dir, 1)
	p2 := saveTiny(t, dir, 2)
	p3 := saveTiny(t, dir, 3)
	// Truncate the newest model file, flip a byte in the next one's state.
	m := filepath.Join(p3, ModelFile)
	b, _ := os.ReadFile(m)
	os.WriteFile(m, b[:len(b)/2], 0o644)
	s := filepath.Join(p2, OptimizerFile)
	b, _ = os.ReadFile(s)
	b[len(b)/2] ^= 1
	os.WriteFile(s, b, 0o644)
	if err := Verify(p3); err == nil || !strings.Contains(err.Error(), ModelFile) {
		t.Errorf("Verify of a truncated model: %v", err)
	}
	c, path, err := LoadLatest(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free()
	if c.Step != 1 || filepath.Base(path) != Name(1) {
		t.Errorf("fell back to %s (step %d), want %s", path, c.Step, Name(1))
	}
	// An interrupted save: a folder without SHA256SUMS is never taken.
	os.Remove(filepath.Join(dir, Name(1), SumsFile))
	if _, _, err := LoadLatest(dir); err == nil || errors.Is(err, ErrNone) {
		t.Errorf("all corrupt: %v", err)
	}
	if _, _, err := LoadLatest(filepath.Join(dir, "none")); !errors.Is(err, ErrNone) {
		t.Errorf("missing dir: %v", err)
	}
}

// TestSumsReadableBySha256sum: SHA256SUMS is in coreutils' format, so `sha256sum -c` verifies a
// checkpoint without protoherb.
func TestSumsReadableBySha256sum(t *testing.T) {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("no sha256sum")
	}
	p := saveTiny(t, t.TempDir(), 5)
	cmd := exec.Command("sha256sum", "-c", SumsFile)
	cmd.Dir = p
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	for _, f := range []string{ModelFile, OptimizerFile, StateFile} {
		if !strings.Contains(string(out), f+": OK") {
			t.Errorf("sha256sum did not check %s:\n%s", f, out)
		}
	}
}
