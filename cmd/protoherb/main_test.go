package main

import (
	"github.com/spf13/cobra"

	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"protoherb/checkpoint"
)

// TestMain lets a test run the command as a process of its own (the test binary, re-executed with
// PROTOHERB_TEST_MAIN=1, is protoherb), so signals and exit codes are the real ones.
func TestMain(m *testing.M) {
	if os.Getenv("PROTOHERB_TEST_MAIN") == "1" {
		os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestExitCodes(t *testing.T) {
	data, _ := fixture(t)
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"version", []string{"version"}, exitOK},
		{"stats", []string{"data", "stats", "--data", data, "--format", "imagefolder"}, exitOK},
		{"unknown command", []string{"trian"}, exitUsage},
		{"unknown flag", []string{"data", "stats", "--data", data, "--chek"}, exitUsage},
		{"bad flag value", []string{"train", "--data", data, "--steps", "many"}, exitUsage},
		{"missing required flag", []string{"data", "stats"}, exitUsage},
		{"missing flag checked by the command", []string{"predict", "--model", "m"}, exitUsage},
		{"train without --data", []string{"train", "--run-dir", t.TempDir()}, exitUsage},
		{"extra argument", []string{"version", "now"}, exitUsage},
		{"bad log level", []string{"version", "--log-level", "loud"}, exitUsage},
		{"runtime failure", []string{"data", "stats", "--data", filepath.Join(data, "nowhere")}, exitFailure},
		{"runtime failure in training", []string{"train", "--data", filepath.Join(data, "nowhere"), "--run-dir", t.TempDir()}, exitFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--log-level") {
				args = append(args, "--log-level", "error")
			}
			var out bytes.Buffer
			if got := runMain(args, &out, &out); got != tc.want {
				t.Errorf("protoherb %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), got, tc.want, out.String())
			}
			if tc.want != exitOK && !strings.Contains(out.String(), "protoherb: ") {
				t.Errorf("exit %d without an error message:\n%s", tc.want, out.String())
			}
		})
	}
}

// TestSignalSavesAndExits130Or143 stops a training run with SIGINT and SIGTERM: each saves a
// checkpoint, says how to continue, and exits 128 + the signal's number.
func TestSignalSavesAndExits130Or143(t *testing.T) {
	data, _ := fixture(t)
	for _, tc := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			runDir := filepath.Join(t.TempDir(), "run")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "train", "--data", data, "--format", "imagefolder", "--run-dir", runDir,
				"--image-size", "16", "--way", "2", "--shot", "1", "--query", "1", "--val-frac", "0", "--eval-every", "0",
				"--save-every", "0", "--steps", "100000000", "--threads", "1", "--quiet")
			cmd.Env = append(os.Environ(), "PROTOHERB_TEST_MAIN=1")
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The run logs its episodes once the data is open; the signal handler is in place long before.
			var log strings.Builder
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "train: episodes") {
					break
				}
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(stderr)
			log.Write(rest)
			err = cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != tc.want {
				t.Fatalf("exit %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", code, err, tc.want, stdout.String(), log.String())
			}
			if !strings.Contains(stdout.String(), "interrupted at step") || !strings.Contains(log.String(), "stopped by") {
				t.Errorf("no word of the interruption:\nstdout:\n%s\nstderr:\n%s", stdout.String(), log.String())
			}
			ck, _, err := checkpoint.LoadLatest(runDir)
			if err != nil {
				t.Fatalf("no checkpoint after %v: %v", tc.sig, err)
			}
			ck.Free()
		})
	}
}

// TestDataStatsCheck: --check reads every image, lists each bad one with its reason and fails.
func TestDataStatsCheck(t *testing.T) {
	data, _ := fixture(t)
	args := []string{"data", "stats", "--data", data, "--format", "imagefolder", "--check", "--quiet", "--log-level", "error"}
	var out bytes.Buffer
	if code := runMain(args, &out, &out); code != exitOK || !strings.Contains(out.String(), "checked 9 image files: 0 bad") {
		t.Fatalf("a good set: exit %d\n%s", code, out.String())
	}
	truncated := filepath.Join(data, "train", "Betula", "b.png")
	b, err := os.ReadFile(truncated)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, b[:len(b)-20], 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(data, "train", "Carex", "a.png")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, decode := range []string{"--decode=false", "--decode"} {
		out.Reset()
		code := runMain(append(args, decode), &out, &out)
		s := out.String()
		if code != exitFailure || !strings.Contains(s, "checked 9 image files: 2 bad") ||
			!strings.Contains(s, "bad image: "+truncated+": corrupt image") || !strings.Contains(s, "bad image: "+empty+": corrupt image: empty file") {
			t.Errorf("%s over a truncated and an empty file: exit %d\n%s", decode, code, s)
		}
	}
}

// TestInferenceFlagDefaults checks that every command that runs a model for inference offers the
// same model flags, with channels-last memory and automatic forward chunks on by default (on this
// CPU 1.15–2.2× the images/s of NCHW whole batches, docs/benchmarks.md).
func TestInferenceFlagDefaults(t *testing.T) {
	for _, c := range []*cobra.Command{newEmbedCmd(), newPrototypesCmd(), newPrototypesAddCmd(), newPredictCmd(), newServeCmd()} {
		for flag, want := range map[string]string{"channels-last": "true", "forward-chunk": "-1", "backbone": "", "image-size": "0", "embed-dim": "0"} {
			f := c.Flags().Lookup(flag)
			if f == nil {
				t.Errorf("%s: no --%s", c.Name(), flag)
				continue
			}
			if f.DefValue != want {
				t.Errorf("%s --%s defaults to %q, want %q", c.Name(), flag, f.DefValue, want)
			}
		}
	}
}
