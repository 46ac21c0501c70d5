package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"protoherb/checkpoint"
	"protoherb/cluster"
	"protoherb/torch"
)

// The distributed tests run every rank as a child process of the test binary (TestDDPChild), on
// 127.0.0.1, with one libtorch thread each. Rank r seeds libtorch with its own seed, so the ranks'
// initial weights differ: matching one process shows rank 0's weights were broadcast.

// ddpJob describes a 2-rank run for the children.
type ddpJob struct {
	Mode, Data, RunDir string
	Steps              int
	Resume             bool
	CutAt              int // rank 1 is interrupted (its context cancelled) before this step
	DieAt              int // rank 1 exits abruptly after this step
}

func ddpConfig(j ddpJob) Config {
	c := tinyConfig(j.Mode, j.Data, j.RunDir)
	c.Threads, c.Steps, c.EvalEvery, c.SaveEvery = 1, j.Steps, 0, 5
	c.Augment = false
	if j.Mode == ModeEpisodic {
		// SGD: Adam divides by the root of tiny second moments, which turns the last-bit differences
		// of another summation order into visible ones within 20 steps.
		c.EpisodesPerStep, c.Optimizer, c.LR, c.Momentum = 2, "sgd", 0.05, 0.9
	}
	return c
}

// runJob runs j on 2 ranks and returns each rank's result, error text and output.
func runJob(t *testing.T, j ddpJob) ([]Result, []error, []string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	spec, _ := json.Marshal(j)
	dir := t.TempDir()
	cmds := make([]*exec.Cmd, 2)
	outs := make([]*strings.Builder, 2)
	for r := range 2 {
		c := exec.Command(os.Args[0], "-test.run=^TestDDPChild$")
		c.Env = append(os.Environ(), "PROTOHERB_TEST_DDP="+string(spec), "PROTOHERB_TEST_DDP_OUT="+filepath.Join(dir, strconv.Itoa(r)),
			"RANK="+strconv.Itoa(r), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port))
		outs[r] = &strings.Builder{}
		c.Stdout, c.Stderr = outs[r], outs[r]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = c
	}
	res := make([]Result, 2)
	errs := make([]error, 2)
	texts := make([]string, 2)
	for r, c := range cmds {
		errs[r] = c.Wait()
		texts[r] = outs[r].String()
		if b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(r))); err == nil {
			_ = json.Unmarshal(b, &res[r])
		}
	}
	return res, errs, texts
}

// TestDDPChild is one rank of a ddpJob (skipped unless started by runJob).
func TestDDPChild(t *testing.T) {
	spec := os.Getenv("PROTOHERB_TEST_DDP")
	if spec == "" {
		t.Skip("a rank of the distributed training tests; runs only as their child process")
	}
	var j ddpJob
	if err := json.Unmarshal([]byte(spec), &j); err != nil {
		t.Fatal(err)
	}
	role, err := cluster.FromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	g, err := torch.NewGroup(torch.GroupOptions{MasterAddr: role.MasterAddr, MasterPort: role.MasterPort,
		Rank: role.Rank, Size: role.WorldSize, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	cfg := ddpConfig(j)
	torch.SetNumThreads(1)
	if err := torch.ManualSeed(cfg.Seed + uint64(1000*role.Rank)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := Options{Group: g, Resume: j.Resume, evalNorm: true, Bar: quiet.Bar}
	if role.Rank == 1 {
		o.beforeStep = func(step int) {
			if step == j.CutAt {
				cancel()
			}
		}
		o.AfterStep = func(step int, _ float64) {
			if step == j.DieAt {
				os.Exit(3)
			}
		}
	}
	res, err := Run(ctx, cfg, o)
	if err != nil {
		fmt.Println("rank error:", err)
		os.Exit(4)
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(os.Getenv("PROTOHERB_TEST_DDP_OUT"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// singleRun runs j's config in this process, as one process would (evalNorm as the ranks).
func singleRun(t *testing.T, j ddpJob) Result {
	t.Helper()
	cfg := ddpConfig(j)
	torch.SetNumThreads(1)
	defer torch.SetNumThreads(2)
	if err := torch.ManualSeed(cfg.Seed); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, Options{evalNorm: true, Bar: quiet.Bar})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// sameWeights checks every tensor of two runs' newest checkpoints: max|Δw| <= rel·max|w|, with
// rel 0 asking for identical weights.
func sameWeights(t *testing.T, dirA, dirB string, rel float64) {
	t.Helper()
	a, _, err := checkpoint.LoadLatest(dirA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	b, _, err := checkpoint.LoadLatest(dirB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	if a.Step != b.Step {
		t.Fatalf("checkpoints at steps %d and %d", a.Step, b.Step)
	}
	wb := b.WeightMap()
	for name, ta := range a.WeightMap() {
		tb, ok := wb[name]
		if !ok {
			t.Fatalf("%s missing from %s", name, dirB)
		}
		xa, err := ta.ToDType(torch.Float64).Float64s()
		if err != nil {
			t.Fatal(err)
		}
		xb, err := tb.ToDType(torch.Float64).Float64s()
		if err != nil {
			t.Fatal(err)
		}
		var maxW, maxD float64
		for i := range xa {
			maxW = math.Max(maxW, math.Abs(xa[i]))
			maxD = math.Max(maxD, math.Abs(xa[i]-xb[i]))
		}
		if maxD > rel*maxW {
			t.Errorf("%s: max |Δw| %.3g > %g × max |w| %.3g (%s against %s)", name, maxD, rel, maxW, dirA, dirB)
		}
	}
}

func TestDDPTwoRanksMatchOneProcess(t *testing.T) {
	data := writeFolder(t, 6, 8, 16, stripes(16))
	for _, mode := range []string{ModePretrain, ModeEpisodic} {
		t.Run(mode, func(t *testing.T) {
			one := ddpJob{Mode: mode, Data: data, RunDir: filepath.Join(t.TempDir(), "one"), Steps: 20}
			single := singleRun(t, one)
			two := one
			two.RunDir = filepath.Join(t.TempDir(), "two")
			res, errs, outs := runJob(t, two)
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v\n%s", r, err, outs[r])
				}
			}
			if res[0].Step != 20 || res[1].Step != 20 {
				t.Fatalf("ranks stopped at steps %d and %d", res[0].Step, res[1].Step)
			}
			if _, err := os.Stat(filepath.Join(two.RunDir, "metrics.jsonl")); err != nil {
				t.Fatalf("rank 0 wrote no metrics: %v", err)
			}
			for i, l := range res[0].Losses {
				if math.Abs(l-single.Losses[i]) > 1e-4*math.Max(1, math.Abs(l)) {
					t.Errorf("step %d: 2-rank loss %.7g, 1 process %.7g", i+1, l, single.Losses[i])
				}
				if res[1].Losses[i] != l {
					t.Errorf("step %d: the ranks report losses %.9g and %.9g", i+1, l, res[1].Losses[i])
				}
			}
			sameWeights(t, one.RunDir, two.RunDir, 1e-4)

			// Resume: rank 1 alone is interrupted during step 8; both stop at the next vote, after
			// step 8, rank 0 saves, and the resumed 2-rank run continues bit-exactly.
			cut := two
			cut.RunDir, cut.CutAt = filepath.Join(t.TempDir(), "cut"), 8
			part, errs, outs := runJob(t, cut)
			for r, err := range errs {
				if err != nil || !part[r].Interrupted || part[r].Step != 8 {
					t.Fatalf("rank %d of the cut run: %v, step %d, interrupted %v\n%s", r, err, part[r].Step, part[r].Interrupted, outs[r])
				}
			}
			cut.CutAt, cut.Resume = 0, true
			rest, errs, outs := runJob(t, cut)
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d of the resumed run: %v\n%s", r, err, outs[r])
				}
			}
			if len(rest[0].Losses) != 12 {
				t.Fatalf("resumed run took %d steps, want 12", len(rest[0].Losses))
			}
			for i, l := range rest[0].Losses {
				if l != res[0].Losses[8+i] {
					t.Errorf("step %d: resumed loss %.9g, uninterrupted %.9g", 9+i, l, res[0].Losses[8+i])
				}
			}
			sameWeights(t, two.RunDir, cut.RunDir, 0)
		})
	}
}

func TestDDPKilledRankStopsTheOther(t *testing.T) {
	data := writeFolder(t, 6, 8, 16, stripes(16))
	j := ddpJob{Mode: ModeEpisodic, Data: data, RunDir: filepath.Join(t.TempDir(), "run"), Steps: 20, DieAt: 3}
	t0 := time.Now()
	_, errs, outs := runJob(t, j)
	if errs[1] == nil {
		t.Fatalf("rank 1 was to die at step 3 but exited 0\n%s", outs[1])
	}
	if errs[0] == nil {
		t.Fatalf("rank 0 finished although rank 1 died\n%s", outs[0])
	}
	if !strings.Contains(outs[0], "rank [1] stopped") {
		t.Fatalf("rank 0's error does not name rank 1:\n%s", outs[0])
	}
	if d := time.Since(t0); d > 60*time.Second {
		t.Fatalf("rank 0 took %v to stop (collective timeout 20 s)", d)
	}
}
