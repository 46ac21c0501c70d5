package train

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"protoherb/dataset"
	"protoherb/imageio"
)

// BadImagesFile lists, in a run directory, every image a run could not load and skipped: one line
// per file, "path<TAB>reason", in the order they were found.
const BadImagesFile = "bad-images.tsv"

// Bad image policy (--on-bad-image).
//
// One unreadable file among a million herbarium sheets must not stop a run, nor make --resume fail at
// the same step forever. With skip, an image that cannot be loaded (missing, empty, truncated,
// corrupt, over the pixel limit) is replaced by another image of the same class, drawn from a
// generator seeded by the step's augmentation seed (itself a draw of the run's generator) and the
// image's row: the replacement depends only on the step, so runs stay deterministic and resume
// exactly. Candidates are tried in the order of one random permutation of the class's images (those
// outside the batch first, so an episode does not show the same image twice when it can be helped);
// a file already known to be bad is passed over without reading it, which gives the same choice as
// reading it again. Each bad file is logged once and listed in BadImagesFile; each step counts its
// replacements (metrics.jsonl, "bad_images"). With fail, the first bad image stops the run with an
// error naming the file.

// badImages is the policy of one image source: what to do, where to draw replacements from, what has
// been reported.
type badImages struct {
	fail    bool
	d       *dataset.Dataset
	byClass map[int][]int // sample positions of the source per class: the replacement candidates
	list    string        // the run's BadImagesFile ("" = not listed)

	mu    sync.Mutex
	known map[string]bool // files found bad (and reported) so far
}

// newBadImages prepares the policy of a source serving the samples at positions subset (nil = all)
// of d. The run's list, when it exists (a resumed run), seeds the files already reported.
func newBadImages(d *dataset.Dataset, subset []int, policy imageio.BadPolicy, list string) *badImages {
	b := &badImages{fail: policy == imageio.Fail, d: d, byClass: map[int][]int{}, list: list, known: map[string]bool{}}
	if subset == nil {
		subset = dataset.Positions(len(d.Samples))
	}
	for _, i := range subset {
		l := d.Samples[i].Label
		b.byClass[l] = append(b.byClass[l], i)
	}
	if list != "" {
		if f, err := os.Open(list); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if p, _, ok := strings.Cut(sc.Text(), "\t"); ok {
					b.known[p] = true
				}
			}
			f.Close()
		}
	}
	return b
}

// isKnown reports whether path was found bad before.
func (b *badImages) isKnown(path string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.known[path]
}

// report logs a bad image and lists it in the run directory, once per file.
func (b *badImages) report(bi imageio.BadImage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.known[bi.Path] {
		return
	}
	b.known[bi.Path] = true
	slog.Warn("train: skipping an image that cannot be loaded", "path", bi.Path, "err", bi.Err)
	if b.list == "" {
		return
	}
	if err := appendLine(b.list, bi.Path+"\t"+oneLine(bi.Err.Error())+"\n"); err != nil {
		slog.Warn("train: cannot list a bad image", "file", b.list, "err", err)
	}
}

// appendLine appends one line to path in a single write: the list only grows, so an append never
// loses a line already there (no temporary file and rename needed), and two sources of one run
// appending to it do not interleave.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// oneLine keeps a reason on one line of the list.
func oneLine(s string) string { return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s) }

// errBadImage wraps the error of a bad image under --on-bad-image fail.
var errBadImage = errors.New("cannot load an image (--on-bad-image skip replaces such images by others of their class)")

// replace writes into out the image of a replacement for the sample at row of the batch idx, whose
// file could not be loaded: the first loadable candidate of its class in a permutation drawn from
// (seed, row).
func (b *badImages) replace(ctx context.Context, l *imageio.Loader, idx []int, row int, seed uint64, out []float32) error {
	bad := b.d.Samples[idx[row]]
	r := rand.New(rand.NewPCG(seed, 0xbad1a9e<<20|uint64(row)))
	// One augmentation seed for whichever candidate is taken: skipping a known bad file and reading
	// it again draw the same.
	itemSeed := r.Uint64()
	for _, j := range b.candidates(r, idx, row) {
		path := b.d.Samples[j].Path
		if path == bad.Path || b.isKnown(path) {
			continue
		}
		bt, err := l.Load(ctx, imageio.ItemsFromDataset(b.d, []int{j}), itemSeed)
		if err != nil {
			return err
		}
		if len(bt.Bad) > 0 {
			b.report(bt.Bad[0])
			continue
		}
		copy(out, bt.X)
		return nil
	}
	return fmt.Errorf("%s: cannot be loaded, and no other image of its class (%s) can replace it", bad.Path, b.className(bad.Label))
}

// candidates orders the class's samples for replacing row of idx: a random permutation, those
// outside the batch first.
func (b *badImages) candidates(r *rand.Rand, idx []int, row int) []int {
	pool := b.byClass[b.d.Samples[idx[row]].Label]
	out := make([]int, 0, len(pool))
	var inBatch []int
	for _, k := range r.Perm(len(pool)) {
		if j := pool[k]; slices.Contains(idx, j) {
			inBatch = append(inBatch, j)
		} else {
			out = append(out, j)
		}
	}
	return append(out, inBatch...)
}

func (b *badImages) className(label int) string {
	if label >= 0 && label < len(b.d.Classes) {
		return b.d.Classes[label].Name
	}
	return fmt.Sprint("label ", label)
}

// listPath is the run's list of bad images ("" without a run directory).
func listPath(runDir string) string {
	if runDir == "" {
		return ""
	}
	return filepath.Join(runDir, BadImagesFile)
}

// onBad is the config's --on-bad-image policy (Validate has checked it).
func (c *Config) onBad() imageio.BadPolicy {
	p, _ := imageio.ParseBadPolicy(c.OnBadImage)
	return p
}
