package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"protoherb/checkpoint"
)

// TestTorchrunTwoRanks runs a 2-rank training under PyTorch's own launcher, torchrun --no-python,
// which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for each rank (the test
// binary re-executed is protoherb). It skips where Debian's python3-torch is not installed.
func TestTorchrunTwoRanks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runDir := filepath.Join(t.TempDir(), "run")
	cmd := torchrunTrain(ctx, t, "the 2-rank run under torchrun", runDir, "--steps", "4", "--dist-timeout", "60s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("torchrun: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "rank 1: train stopped at step 4") || !strings.Contains(string(out), "train: step 4") {
		t.Fatalf("want rank 0's summary and rank 1's line:\n%s", out)
	}
	ck, _, err := checkpoint.LoadLatest(runDir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Free()
	if ck.Step != 4 || ck.Metrics["world_size"] != 2 {
		t.Fatalf("checkpoint at step %d of world size %v, want step 4 of 2", ck.Step, ck.Metrics["world_size"])
	}
}

// TestTorchrunCtrlCStopsEveryRank sends SIGINT to torchrun during a long 2-rank run: torchrun passes
// a signal on to both ranks, they stop at the same step (the stop vote), and rank 0 saves.
func TestTorchrunCtrlCStopsEveryRank(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runDir := filepath.Join(t.TempDir(), "run")
	cmd := torchrunTrain(ctx, t, "Ctrl-C under torchrun", runDir, "--steps", "100000000")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the ranks train (rank 0 has written metrics), then interrupt.
	for !strings.Contains(readFileOrEmpty(filepath.Join(runDir, "metrics.jsonl")), `"step":3`) {
		if ctx.Err() != nil {
			t.Fatalf("the run did not start:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	ck, _, err := checkpoint.LoadLatest(runDir)
	if err != nil {
		t.Fatalf("no checkpoint after Ctrl-C: %v\n%s", err, out.String())
	}
	defer ck.Free()
	if !strings.Contains(out.String(), "interrupted at step "+strconv.Itoa(ck.Step)) {
		t.Fatalf("rank 0 saved step %d but did not say it was interrupted there:\n%s", ck.Step, out.String())
	}
	if !strings.Contains(out.String(), "rank 1: train stopped at step "+strconv.Itoa(ck.Step)) {
		t.Fatalf("rank 1 did not stop at rank 0's step %d:\n%s", ck.Step, out.String())
	}
}

func readFileOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// torchrunTrain makes the command for a 2-rank episodic training on the test fixture under
// torchrun --no-python (the test binary re-executed as protoherb), skipping the test where Debian's
// python3-torch, which ships torchrun, is not installed. extra sets the steps and other flags.
func torchrunTrain(ctx context.Context, t *testing.T, what, runDir string, extra ...string) *exec.Cmd {
	t.Helper()
	torchrun := "/usr/bin/torchrun"
	if _, err := os.Stat(torchrun); err != nil {
		t.Skip("torchrun is not installed (Debian's python3-torch ships it): skipping " + what)
	}
	data, _ := fixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// --redirects 1 --tee 1: torchrun 1.13 on Python 3.11 (Debian 12) fails on its default "0"
	// settings (its Std enum no longer iterates NONE).
	args := []string{"--redirects", "1", "--tee", "1", "--log_dir", t.TempDir(), "--no_python",
		"--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", strconv.Itoa(port),
		os.Args[0], "train", "--data", data, "--format", "imagefolder", "--run-dir", runDir,
		"--image-size", "16", "--way", "2", "--shot", "1", "--query", "1", "--val-frac", "0", "--eval-every", "0",
		"--episodes-per-step", "2", "--save-every", "0", "--threads", "1", "--quiet"}
	cmd := exec.CommandContext(ctx, torchrun, append(args, extra...)...)
	cmd.Env = append(os.Environ(), "PROTOHERB_TEST_MAIN=1", "OMP_NUM_THREADS=1")
	return cmd
}
