package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"protoherb/serve"
)

// readmePipeline returns the commands of the README's "The pipeline on real data" block, one
// argument list each, with $D replaced by data (the `D=...` line sets it).
func readmePipeline(t *testing.T, readme, data string) [][]string {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "## The pipeline on real data")
	if i < 0 {
		t.Fatal("README.md: no section \"The pipeline on real data\"")
	}
	block := text[i:]
	block = block[strings.Index(block, "```sh")+len("```sh"):]
	block = block[:strings.Index(block, "```")]
	block = strings.ReplaceAll(block, "\\\n", " ")
	var cmds [][]string
	comment := regexp.MustCompile(`\s#.*$`)
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(comment.ReplaceAllString(line, ""))
		if line == "" || strings.HasPrefix(line, "D=") {
			continue
		}
		f := strings.Fields(strings.ReplaceAll(line, "$D", data))
		if f[0] != "protoherb" {
			t.Fatalf("README pipeline line %q does not run protoherb", line)
		}
		cmds = append(cmds, f[1:])
	}
	return cmds
}

// The README's pipeline commands run as written on a small synthetic herbarium: only the sizes are
// shrunk (flags appended to a command override its earlier ones), and pretraining starts from
// random weights instead of the ImageNet file. Then `embed` and `serve --index` as the commands
// table shows them.
func TestReadmePipelineRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline (about half a minute)")
	}
	readme, err := filepath.Abs("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	t.Chdir(root)
	data := filepath.Join(root, "herbarium")
	if out, err := run(t, "synth", "--out", data, "--species", "10", "--genera", "4", "--families", "2",
		"--min-per-class", "4", "--max-per-class", "8", "--test-per-class", "2", "--size", "96", "--seed", "3"); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	small := map[string][]string{
		"pretrain": {"--backbone", "conv4", "--image-size", "32", "--top-classes", "6", "--steps", "4", "--init", "",
			"--batch-size", "16", "--eval-every", "0", "--save-every", "4", "--threads", "1"},
		"train": {"--backbone", "conv4", "--image-size", "32", "--steps", "4", "--way", "4", "--shot", "1", "--query", "1",
			"--eval-every", "0", "--save-every", "4", "--threads", "1"},
		"prototypes": {"--quiet"},
		"predict":    {"--quiet"},
	}
	for _, args := range readmePipeline(t, readme, data) {
		if args[0] == "serve" {
			args = append(args, "--addr", "127.0.0.1:0")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := runCtx(t, ctx, args...)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
			continue
		}
		args = append(args, small[args[0]]...)
		if out, err := run(t, args...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, f := range []string{"protos.safetensors", "submission.csv", "topk.csv"} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("the pipeline did not write %s: %v", f, err)
		}
	}
	// embed --model RUN --data P --split S --out emb.safetensors, then serve --index reads it.
	if out, err := run(t, "embed", "--model", "runs/proto", "--data", data, "--split", "train", "--out", "train-emb.safetensors", "--quiet"); err != nil {
		t.Fatalf("embed: %v\n%s", err, out)
	}
	x, err := serve.OpenIndex("train-emb.safetensors", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Thumbnail(0); err != nil {
		t.Errorf("serve --index train-emb.safetensors: thumbnail of the first specimen: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := runCtx(t, ctx, "serve", "--model", "runs/proto", "--prototypes", "protos.safetensors", "--index", "train-emb.safetensors", "--addr", "127.0.0.1:0"); err != nil {
		t.Fatalf("serve --index: %v", err)
	}
}

// runCtx executes the CLI with args until ctx ends (for serve).
func runCtx(t *testing.T, ctx context.Context, args ...string) error {
	t.Helper()
	cmd := newRootCmd()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--log-level", "error"))
	return cmd.ExecuteContext(ctx)
}
