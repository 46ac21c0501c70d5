// Package checkpoint saves and restores training runs so that they survive interruption: weights,
// optimizer state, step and epoch, both random generators, the run config and the class list, written
// atomically, checksummed, the last N kept, and a separate slot for the best one.
//
// # Format
//
// A checkpoint is a folder that Python reads without protoherb:
//
//	DIR/ckpt-000001200/          one per saved step (9-digit step), the newest keepLast kept
//	    model.safetensors        weights by PyTorch state_dict names (safetensors.torch.load_file;
//	                             metadata: step, epoch)
//	    optimizer.bin            libtorch's optimizer archive (torch::serialize), absent when empty
//	    state.json               {"format":"protoherb-checkpoint/1","step","epoch","torch_rng" (base64
//	                             of torch.get_rng_state() bytes),"go_rng" (base64 of math/rand/v2 PCG
//	                             MarshalBinary),"config","classes","metrics","created"}
//	    SHA256SUMS               sha256sum -c format, one line per file above; written last
//	DIR/best/                    the same layout: the best validation checkpoint (SaveBest)
//
// A folder is written under a temporary name (DIR/.tmp-*) and renamed into place when complete, so
// an interrupted save never leaves a partial checkpoint under a final name. Load verifies every
// checksum; LoadLatest logs a corrupt or truncated checkpoint and falls back to the previous one.
package checkpoint

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"protoherb/atomicfile"
	"protoherb/nn"
	"protoherb/torch"
)

// Format identifies the layout written by this package.
const Format = "protoherb-checkpoint/1"

// File names inside a checkpoint folder.
const (
	ModelFile     = "model.safetensors"
	OptimizerFile = "optimizer.bin"
	StateFile     = "state.json"
	SumsFile      = "SHA256SUMS"
	BestName      = "best"
	prefix        = "ckpt-"
)

// ErrNone is returned (wrapped) by LoadLatest and LoadBest when there is no checkpoint to load.
var ErrNone = errors.New("no checkpoint")

// Checkpoint is the state of a training run.
type Checkpoint struct {
	Step, Epoch    int
	Weights        []nn.Param      // model.State(); tensors from Load are CPU tensors owned by the Checkpoint (Free)
	OptimizerState []byte          // torch.Optimizer.State()
	TorchRNG       []byte          // torch.RNGState()
	GoRNG          []byte          // (*rand.PCG).MarshalBinary()
	Config         json.RawMessage // the full run config
	Classes        json.RawMessage // the class list (ids, names, ...)
	Metrics        map[string]float64
}

// WeightMap returns the weights by name, for nn.LoadInto.
func (c *Checkpoint) WeightMap() map[string]*torch.Tensor {
	m := make(map[string]*torch.Tensor, len(c.Weights))
	for _, p := range c.Weights {
		m[p.Name] = p.T
	}
	return m
}

// Free releases the weight tensors of a loaded checkpoint.
func (c *Checkpoint) Free() {
	if c != nil {
		nn.FreeParams(c.Weights)
		c.Weights = nil
	}
}

type stateJSON struct {
	Format   string                     `json:"format"`
	Step     int                        `json:"step"`
	Epoch    int                        `json:"epoch"`
	TorchRNG []byte                     `json:"torch_rng"`
	GoRNG    []byte                     `json:"go_rng"`
	Config   json.RawMessage            `json:"config,omitempty"`
	Classes  json.RawMessage            `json:"classes,omitempty"`
	Metrics  map[string]json.RawMessage `json:"metrics,omitempty"`
	Created  string                     `json:"created"`
}

// Name returns the folder name of the checkpoint of a step.
func Name(step int) string { return fmt.Sprintf("%s%09d", prefix, step) }

// Save writes c as DIR/ckpt-<step> (replacing one of the same step) and then removes all but the
// newest keepLast step checkpoints (keepLast <= 0 keeps all) and what interrupted saves left. It
// returns the checkpoint's folder. One process writes to a DIR at a time.
func Save(dir string, c *Checkpoint, keepLast int) (string, error) {
	if c.Step < 0 {
		return "", fmt.Errorf("checkpoint %s: negative step %d", dir, c.Step)
	}
	path, err := write(dir, Name(c.Step), c)
	if err != nil {
		return "", err
	}
	// Folders left by interrupted saves (one writer per DIR, so none is in progress).
	if stale, _ := filepath.Glob(filepath.Join(dir, ".tmp-"+prefix+"*")); len(stale) > 0 {
		for _, s := range stale {
			os.RemoveAll(s)
		}
	}
	if keepLast > 0 {
		steps, _ := list(dir)
		for _, s := range steps[min(keepLast, len(steps)):] {
			if err := os.RemoveAll(filepath.Join(dir, Name(s))); err != nil {
				slog.Warn("checkpoint: cannot remove an old checkpoint", "path", filepath.Join(dir, Name(s)), "err", err)
			}
		}
	}
	return path, nil
}

// SaveBest writes c into the best slot, DIR/best, replacing the previous best.
func SaveBest(dir string, c *Checkpoint) (string, error) { return write(dir, BestName, c) }

// LoadBest loads DIR/best (an error wrapping ErrNone when there is none).
func LoadBest(dir string) (*Checkpoint, string, error) {
	p := filepath.Join(dir, BestName)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%s: %w", p, ErrNone)
	}
	c, err := Load(p)
	return c, p, err
}

// write builds the checkpoint folder under a temporary name and renames it to DIR/name.
func write(dir, name string, c *Checkpoint) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".tmp-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	files := []string{ModelFile, StateFile}
	meta := map[string]string{"format": Format, "step": strconv.Itoa(c.Step), "epoch": strconv.Itoa(c.Epoch)}
	if arch := architecture(c.Config); arch != "" { // a model.safetensors copied alone still says what it is
		meta["config"] = arch
	}
	if err := nn.SaveSafetensors(filepath.Join(tmp, ModelFile), c.Weights, meta); err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if len(c.OptimizerState) > 0 {
		files = append(files, OptimizerFile)
		if err := writeBytes(filepath.Join(tmp, OptimizerFile), c.OptimizerState); err != nil {
			return "", err
		}
	}
	st := stateJSON{Format: Format, Step: c.Step, Epoch: c.Epoch, TorchRNG: c.TorchRNG, GoRNG: c.GoRNG,
		Config: c.Config, Classes: c.Classes, Metrics: encodeMetrics(c.Metrics), Created: time.Now().UTC().Format(time.RFC3339)}
	b, err := json.Marshal(st) // compact: Config and Classes come back byte-identical
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: state: %w", name, err)
	}
	if err := writeBytes(filepath.Join(tmp, StateFile), append(b, '\n')); err != nil {
		return "", err
	}
	var sums strings.Builder
	for _, f := range files {
		h, err := sumFile(filepath.Join(tmp, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&sums, "%s  %s\n", h, f)
	}
	if err := writeBytes(filepath.Join(tmp, SumsFile), []byte(sums.String())); err != nil {
		return "", err
	}
	final := filepath.Join(dir, name)
	var old string
	if _, err := os.Stat(final); err == nil {
		old = tmp + ".old"
		if err := os.Rename(final, old); err != nil {
			return "", fmt.Errorf("checkpoint: move the previous %s aside: %w", final, err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		if old != "" {
			os.Rename(old, final)
		}
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	ok = true
	if old != "" {
		os.RemoveAll(old)
	}
	syncDir(dir)
	return final, nil
}

func writeBytes(path string, b []byte) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error { _, err := w.Write(b); return err })
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func sumFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// encodeMetrics keeps non-finite values (a diverged loss) as the strings "NaN", "+Inf", "-Inf",
// which JSON numbers cannot hold.
func encodeMetrics(m map[string]float64) map[string]json.RawMessage {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			out[k] = json.RawMessage(strconv.Quote(strconv.FormatFloat(v, 'g', -1, 64)))
		} else {
			out[k] = json.RawMessage(strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	return out
}

func decodeMetrics(m map[string]json.RawMessage) (map[string]float64, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]float64, len(m))
	for k, raw := range m {
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return nil, fmt.Errorf("metric %s: %s is not a number", k, raw)
			}
			if v, err = strconv.ParseFloat(s, 64); err != nil {
				return nil, fmt.Errorf("metric %s: %q is not a number", k, s)
			}
		}
		out[k] = v
	}
	return out, nil
}

// Verify checks a checkpoint folder's files against its SHA256SUMS.
func Verify(path string) error {
	f, err := os.Open(filepath.Join(path, SumsFile))
	if err != nil {
		return fmt.Errorf("checkpoint %s: no checksums (incomplete or not a checkpoint): %w", path, err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(want) != 64 || strings.ContainsAny(name, `/\`) {
			return fmt.Errorf("checkpoint %s: malformed %s line %q", path, SumsFile, sc.Text())
		}
		got, err := sumFile(filepath.Join(path, name))
		if err != nil {
			return fmt.Errorf("checkpoint %s: %w", path, err)
		}
		if got != want {
			return fmt.Errorf("checkpoint %s: %s is corrupt or truncated (sha256 %s, recorded %s)", path, name, got[:12], want[:12])
		}
		listed[name] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("checkpoint %s: %s: %w", path, SumsFile, err)
	}
	for _, need := range []string{ModelFile, StateFile} {
		if !listed[need] {
			return fmt.Errorf("checkpoint %s: %s does not list %s", path, SumsFile, need)
		}
	}
	return nil
}

// Load reads and verifies the checkpoint folder at path.
func Load(path string) (*Checkpoint, error) {
	if err := Verify(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(path, StateFile))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	var st stateJSON
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %s: %w", path, StateFile, err)
	}
	if st.Format != Format {
		return nil, fmt.Errorf("checkpoint %s: format %q, want %q", path, st.Format, Format)
	}
	metrics, err := decodeMetrics(st.Metrics)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	c := &Checkpoint{Step: st.Step, Epoch: st.Epoch, TorchRNG: st.TorchRNG, GoRNG: st.GoRNG,
		Config: st.Config, Classes: st.Classes, Metrics: metrics}
	if opt, err := os.ReadFile(filepath.Join(path, OptimizerFile)); err == nil {
		c.OptimizerState = opt
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	ws, _, err := nn.ReadSafetensors(filepath.Join(path, ModelFile))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	c.Weights = ws
	return c, nil
}

// list returns the steps of DIR's ckpt-* folders, newest first.
func list(dir string) ([]int, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var steps []int
	for _, e := range es {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if s, err := strconv.Atoi(strings.TrimPrefix(e.Name(), prefix)); err == nil && s >= 0 {
			steps = append(steps, s)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(steps)))
	return slices.Compact(steps), nil
}

// Steps returns the steps of the checkpoints in dir, newest first (unverified).
func Steps(dir string) ([]int, error) { return list(dir) }

// LoadLatest loads the newest good checkpoint in dir: a corrupt or truncated one is logged and
// skipped in favour of the previous one. With no checkpoint at all it returns an error wrapping
// ErrNone (start fresh); when every one is corrupt, an error naming them.
func LoadLatest(dir string) (*Checkpoint, string, error) {
	steps, err := list(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if len(steps) == 0 {
		return nil, "", fmt.Errorf("checkpoint %s: %w", dir, ErrNone)
	}
	var errs []error
	for _, s := range steps {
		p := filepath.Join(dir, Name(s))
		c, err := Load(p)
		if err == nil {
			if len(errs) > 0 {
				slog.Warn("checkpoint: resuming from an older checkpoint", "path", p, "skipped", len(errs))
			}
			return c, p, nil
		}
		slog.Error("checkpoint: corrupt, falling back to the previous one", "path", p, "err", err)
		errs = append(errs, err)
	}
	return nil, "", fmt.Errorf("checkpoint %s: no good checkpoint: %w", dir, errors.Join(errs...))
}

// architectureKeys are the run-config keys that describe the network and its input (package
// train's names, as infer reads them), not the run (folders, steps, seeds).
var architectureKeys = []string{"backbone", "model", "arch", "image_size", "in_channels", "channels", "embed_dim",
	"l2_norm", "invert", "resize", "mean", "std"}

// architecture returns the JSON object of the run config's architecture keys ("" when none), so
// that identical weights make identical files whatever the run's folder.
func architecture(config []byte) string {
	var all map[string]json.RawMessage
	if json.Unmarshal(config, &all) != nil {
		return ""
	}
	keep := map[string]json.RawMessage{}
	for k, v := range all {
		if slices.Contains(architectureKeys, strings.ToLower(strings.ReplaceAll(k, "-", "_"))) {
			keep[k] = v
		}
	}
	if len(keep) == 0 {
		return ""
	}
	b, _ := json.Marshal(keep)
	return string(b)
}
