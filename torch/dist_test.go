package torch

import (
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The distributed tests run each rank as a child process of the test binary: the child runs
// TestDistChild, which does the part of the scenario named by PROTOHERB_TEST_DIST and reports by
// its exit status and output.

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runRanks starts world ranks of scenario and returns each one's error and output.
func runRanks(t *testing.T, scenario string, world int) ([]error, []string) {
	t.Helper()
	port := freePort(t)
	cmds := make([]*exec.Cmd, world)
	outs := make([]*strings.Builder, world)
	for r := range world {
		c := exec.Command(os.Args[0], "-test.run=^TestDistChild$", "-test.v")
		c.Env = append(os.Environ(), "PROTOHERB_TEST_DIST="+scenario, "RANK="+strconv.Itoa(r),
			"WORLD_SIZE="+strconv.Itoa(world), "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port))
		outs[r] = &strings.Builder{}
		c.Stdout, c.Stderr = outs[r], outs[r]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = c
	}
	errs := make([]error, world)
	texts := make([]string, world)
	for r, c := range cmds {
		errs[r] = c.Wait()
		texts[r] = outs[r].String()
	}
	return errs, texts
}

// needGloo skips a test of the Gloo backend in a shimlib build whose library has none (a PyTorch
// wheel ships no Gloo headers); the default build always compiles Gloo in, so there it never skips.
func needGloo(t *testing.T) {
	t.Helper()
	if sharedShim && !slices.Contains(DistBackends(), "gloo") {
		t.Skipf("libprotoherb_torch.so was built without Gloo (backends %v)", DistBackends())
	}
}

func TestDistCollectivesAcrossTwoProcesses(t *testing.T) {
	needGloo(t)
	errs, outs := runRanks(t, "collectives", 2)
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v\n%s", r, err, outs[r])
		}
	}
}

func TestDistRankDeathFailsWithinTimeout(t *testing.T) {
	needGloo(t)
	t0 := time.Now()
	errs, outs := runRanks(t, "death", 2)
	if errs[1] != nil {
		t.Fatalf("rank 1 (leaves early) failed: %v\n%s", errs[1], outs[1])
	}
	if errs[0] != nil {
		t.Fatalf("rank 0: %v\n%s", errs[0], outs[0])
	}
	if !strings.Contains(outs[0], "collective failed as expected") {
		t.Fatalf("rank 0 did not report the failed collective:\n%s", outs[0])
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Fatalf("took %v with a 3 s timeout", d)
	}
}

func TestDistBackendsListGloo(t *testing.T) {
	needGloo(t)
	if b := DistBackends(); len(b) == 0 || b[0] != "gloo" {
		t.Fatalf("backends %v, want gloo first", b)
	}
	if _, err := NewGroup(GroupOptions{MasterAddr: "127.0.0.1", MasterPort: 1, Rank: 2, Size: 2}); err == nil {
		t.Fatal("rank 2 of 2 accepted")
	}
	if _, err := NewGroup(GroupOptions{Backend: "mpi", MasterAddr: "127.0.0.1", MasterPort: freePort(t), Rank: 0, Size: 1, Timeout: 5 * time.Second}); err == nil || !strings.Contains(err.Error(), "not compiled in") {
		t.Fatalf("backend mpi: %v", err)
	}
}

// TestDistChild is one rank of a scenario (skipped unless started by runRanks).
func TestDistChild(t *testing.T) {
	scenario := os.Getenv("PROTOHERB_TEST_DIST")
	if scenario == "" {
		t.Skip("a rank of the distributed tests; runs only as their child process")
	}
	rank, _ := strconv.Atoi(os.Getenv("RANK"))
	world, _ := strconv.Atoi(os.Getenv("WORLD_SIZE"))
	port, _ := strconv.Atoi(os.Getenv("MASTER_PORT"))
	g, err := NewGroup(GroupOptions{MasterAddr: os.Getenv("MASTER_ADDR"), MasterPort: port, Rank: rank, Size: world, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	switch scenario {
	case "collectives":
		distCollectives(t, g)
	case "death":
		if rank == 1 {
			return // leaves without taking part: rank 0's all-reduce must fail, not hang
		}
		x := Full(nil, 1, Float32, CPU, 4)
		defer x.Free()
		time.Sleep(200 * time.Millisecond)
		err := g.AllReduce([]*Tensor{x}, DistSum, false, 0)
		if err == nil {
			t.Fatal("all-reduce with a departed rank succeeded")
		}
		fmt.Println("collective failed as expected:", err)
	}
}

func distCollectives(t *testing.T, g *Group) {
	r := float32(g.Rank())
	// Broadcast: each rank starts from its own values and ends with rank 0's.
	a := FromFloat32(nil, []float32{r + 1, r + 2, r + 3}, 3)
	b := FromFloat32(nil, []float32{10 * (r + 1)}, 1, 1)
	defer a.Free()
	defer b.Free()
	if err := g.Broadcast([]*Tensor{a, b}, 0); err != nil {
		t.Fatal(err)
	}
	expect(t, "broadcast a", a, 1, 2, 3)
	expect(t, "broadcast b", b, 10)

	// All-reduce across buckets of 8 bytes and two dtypes: sums, averages and maxima.
	x := FromFloat32(nil, []float32{r, 2 * r, 3}, 3)
	y := FromFloat64(nil, []float64{float64(r * r)}, 1)
	z := FromFloat32(nil, []float32{1, r}, 2)
	defer x.Free()
	defer y.Free()
	defer z.Free()
	if err := g.AllReduce([]*Tensor{x, y, z}, DistSum, true, 8); err != nil {
		t.Fatal(err)
	}
	expect(t, "average x", x, 0.5, 1, 3)
	expect(t, "average y", y, 0.5)
	expect(t, "average z", z, 1, 0.5)
	m := FromFloat32(nil, []float32{r, -r}, 2)
	defer m.Free()
	if err := g.AllReduce([]*Tensor{m}, DistMax, false, 0); err != nil {
		t.Fatal(err)
	}
	expect(t, "max", m, 1, 0)

	// Gradients: the mean over ranks; a parameter without a gradient on one rank counts as zeros.
	w := FromFloat32(nil, []float32{1, 2}, 2)
	v := FromFloat32(nil, []float32{5}, 1)
	defer w.Free()
	defer v.Free()
	for _, p := range []*Tensor{w, v} {
		if err := p.SetRequiresGrad(true).Err(); err != nil {
			t.Fatal(err)
		}
	}
	loss := w.MulScalar(float64(r + 1)).Sum(false)
	if g.Rank() == 1 {
		loss = loss.Add(v.Sum(false))
	}
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	loss.Free()
	if err := g.AverageGrads([]*Tensor{w, v}, 0); err != nil {
		t.Fatal(err)
	}
	expect(t, "grad w", w.Grad(), 1.5, 1.5)
	expect(t, "grad v", v.Grad(), 0.5)

	distReducer(t, g)

	if err := g.Barrier(); err != nil {
		t.Fatal(err)
	}
	if n, err := g.StoreAdd("joined", 1); err != nil || n < 1 || n > 2 {
		t.Fatalf("store add: %d, %v", n, err)
	}
}

// distReducer checks c10d's Reducer over two steps: when Backward returns, the gradients are the
// mean over ranks, a parameter one rank's loss does not reach counting as zeros there.
func distReducer(t *testing.T, g *Group) {
	r := float64(g.Rank())
	w := FromFloat32(nil, []float32{1, 2}, 2).SetRequiresGrad(true)
	v := FromFloat32(nil, []float32{5}, 1).SetRequiresGrad(true)
	frozen := FromFloat32(nil, []float32{7}, 1)
	defer w.Free()
	defer v.Free()
	defer frozen.Free()
	red, err := g.NewReducer([]*Tensor{w, frozen, v}, 8)
	if err != nil || red == nil {
		t.Fatalf("reducer: %v, %v", red, err)
	}
	defer red.Close()
	for step := 1.0; step <= 2; step++ {
		for _, p := range []*Tensor{w, v} {
			if err := p.ZeroGrad(); err != nil {
				t.Fatal(err)
			}
		}
		loss := w.MulScalar(step * (r + 1)).Sum(false).Add(frozen.Sum(false))
		if g.Rank() == 1 {
			loss = loss.Add(v.MulScalar(step).Sum(false))
		}
		if err := red.Prepare(loss); err != nil {
			t.Fatal(err)
		}
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		loss.Free()
		expect(t, "reduced grad w", w.Grad(), 1.5*step, 1.5*step)
		expect(t, "reduced grad v", v.Grad(), 0.5*step)
	}
}

func expect(t *testing.T, what string, x *Tensor, want ...float64) {
	t.Helper()
	got, err := x.ToDType(Float64).Float64s()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-6 {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}
