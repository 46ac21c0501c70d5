package train

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"protoherb/checkpoint"
	"protoherb/metrics"
)

// brokenSet writes 6 classes × 8 striped PNGs and a CSV dataset over them in which four images cannot
// be loaded: one truncated, one of zero bytes, one whose header declares 20000×20000 pixels (over the
// loader's limit), and one listed but missing. It returns the CSV and the four paths.
func brokenSet(t *testing.T) (string, []string) {
	t.Helper()
	root := writeFolder(t, 6, 8, 16, stripes(16))
	file := func(c, i int) string {
		return filepath.Join(root, fmt.Sprintf("class%02d", c), fmt.Sprintf("%03d.png", i))
	}
	truncated, empty, bomb := file(1, 3), file(2, 4), file(3, 5)
	missing := filepath.Join(root, "class04", "missing.png")
	b, err := os.ReadFile(truncated)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bomb, pngHeader(20000, 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("path,label\n")
	for c := range 6 {
		for i := range 8 {
			fmt.Fprintf(&csv, "class%02d/%03d.png,class%02d\n", c, i, c)
		}
	}
	csv.WriteString("class04/missing.png,class04\n")
	p := filepath.Join(root, "train.csv")
	if err := os.WriteFile(p, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, []string{truncated, empty, bomb, missing}
}

// pngHeader is a PNG signature and a valid IHDR chunk declaring w×h 8-bit RGB, and nothing else.
func pngHeader(w, h uint32) []byte {
	var ihdr bytes.Buffer
	ihdr.WriteString("IHDR")
	binary.Write(&ihdr, binary.BigEndian, w)
	binary.Write(&ihdr, binary.BigEndian, h)
	ihdr.Write([]byte{8, 2, 0, 0, 0})
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	binary.Write(&out, binary.BigEndian, uint32(ihdr.Len()-4))
	out.Write(ihdr.Bytes())
	binary.Write(&out, binary.BigEndian, crc32.ChecksumIEEE(ihdr.Bytes()))
	return out.Bytes()
}

// TestStreamingRunSkipsBadImages: a streaming run (augmentation, images from files) over a set with
// broken images finishes, lists each broken file once and counts the replacements; a second run gives
// the same weights, and a run cut mid-way resumes to them exactly. With --on-bad-image fail it stops
// naming a broken file.
func TestStreamingRunSkipsBadImages(t *testing.T) {
	csv, broken := brokenSet(t)
	for _, tc := range []struct {
		name    string
		mode    string
		edit    func(*Config)
		listAll bool // every broken file is drawn (plain epochs over all the images)
	}{
		{"pretrain", ModePretrain, func(c *Config) { c.Sampling, c.Optimizer = "plain", "adamw" }, true},
		{"train", ModeEpisodic, func(c *Config) {}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(tc.mode, csv, filepath.Join(t.TempDir(), "a"))
			cfg.Format = "csv"
			tc.edit(&cfg)
			cfg.Augment, cfg.InMemory, cfg.Steps, cfg.SaveEvery, cfg.EvalEvery = true, "false", 12, 4, 4
			a, err := seededRun(context.Background(), cfg, quiet)
			if err != nil {
				t.Fatalf("a streaming run over broken images: %v", err)
			}
			listed := readList(t, cfg.RunDir)
			for _, p := range listed {
				if !slices.Contains(broken, p) {
					t.Errorf("%s lists %s, which is not broken", BadImagesFile, p)
				}
			}
			if len(listed) == 0 || (tc.listAll && len(listed) != len(broken)) {
				t.Errorf("%s lists %q, want the broken files %q", BadImagesFile, listed, broken)
			}
			if list, _ := os.ReadFile(filepath.Join(cfg.RunDir, BadImagesFile)); tc.listAll && !strings.Contains(string(list), broken[1]+"\tcorrupt image: empty file") {
				t.Errorf("%s does not say the zero-byte file is empty:\n%s", BadImagesFile, list)
			}
			if n := countBad(t, cfg.RunDir); n == 0 {
				t.Error("metrics.jsonl counts no replaced image")
			}
			final := modelBytes(t, cfg.RunDir, 12)

			again := cfg
			again.RunDir = filepath.Join(t.TempDir(), "b")
			b, err := seededRun(context.Background(), again, quiet)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Losses, b.Losses) || !bytes.Equal(final, modelBytes(t, again.RunDir, 12)) {
				t.Errorf("two runs differ: losses %v and %v", a.Losses, b.Losses)
			}

			cut := cfg
			cut.RunDir = filepath.Join(t.TempDir(), "cut")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			o := quiet
			o.beforeStep = func(step int) {
				if step == 7 {
					cancel()
				}
			}
			if part, err := seededRun(ctx, cut, o); err != nil || part.Step != 6 {
				t.Fatalf("cut run: step %d, %v; want interrupted at 6", part.Step, err)
			}
			o = quiet
			o.Resume = true
			rest, err := seededRun(context.Background(), cut, o)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if !slices.Equal(rest.Losses, a.Losses[6:]) || !bytes.Equal(final, modelBytes(t, cut.RunDir, 12)) {
				t.Errorf("resumed run differs: losses %v, uninterrupted %v", rest.Losses, a.Losses[6:])
			}
			if got := readList(t, cut.RunDir); !slices.Equal(got, listed) {
				t.Errorf("after resume %s lists %q, the uninterrupted run %q", BadImagesFile, got, listed)
			}
			if countBad(t, cut.RunDir) != countBad(t, cfg.RunDir) {
				t.Errorf("resumed run counts %d replaced images, uninterrupted %d", countBad(t, cut.RunDir), countBad(t, cfg.RunDir))
			}

			strict := cfg
			strict.RunDir, strict.OnBadImage = filepath.Join(t.TempDir(), "strict"), "fail"
			_, err = seededRun(context.Background(), strict, quiet)
			if err == nil || !strings.Contains(err.Error(), "on-bad-image") || !slices.ContainsFunc(broken, func(p string) bool { return strings.Contains(err.Error(), p) }) {
				t.Errorf("--on-bad-image fail: %v; want an error naming a broken file", err)
			}
		})
	}
}

// readList returns the files a run lists as bad, sorted; a file listed twice is an error.
func readList(t *testing.T, runDir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir, BadImagesFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		p, reason, ok := strings.Cut(line, "\t")
		if !ok || reason == "" {
			t.Errorf("%s: line %q is not path<TAB>reason", BadImagesFile, line)
		}
		if slices.Contains(out, p) {
			t.Errorf("%s lists %s twice", BadImagesFile, p)
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// countBad sums the replaced images metrics.jsonl records.
func countBad(t *testing.T, runDir string) int {
	t.Helper()
	recs, err := metrics.ReadFile(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if v, ok := r.Get("bad_images"); ok && r.Phase == "train" {
			n += int(v)
		}
	}
	return n
}

func modelBytes(t *testing.T, runDir string, step int) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir, checkpoint.Name(step), checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInMemoryRunListsOrFailsOnBadImages: decoding into memory leaves the broken images out and
// lists them (skip), or stops naming one (fail).
func TestInMemoryRunListsOrFailsOnBadImages(t *testing.T) {
	csv, broken := brokenSet(t)
	cfg := tinyConfig(ModePretrain, csv, filepath.Join(t.TempDir(), "mem"))
	cfg.Format, cfg.InMemory, cfg.Steps, cfg.EvalEvery, cfg.ValFrac = "csv", "true", 2, 0, 0
	if _, err := seededRun(context.Background(), cfg, quiet); err != nil {
		t.Fatalf("an in-memory run over broken images: %v", err)
	}
	if listed := readList(t, cfg.RunDir); len(listed) != len(broken) {
		t.Errorf("%s lists %q, want the broken files %q", BadImagesFile, listed, broken)
	}
	cfg.RunDir, cfg.OnBadImage = filepath.Join(t.TempDir(), "strict"), "fail"
	_, err := seededRun(context.Background(), cfg, quiet)
	if err == nil || !strings.Contains(err.Error(), "on-bad-image") || !slices.ContainsFunc(broken, func(p string) bool { return strings.Contains(err.Error(), p) }) {
		t.Errorf("in memory, --on-bad-image fail: %v; want an error naming a broken file", err)
	}
}
