package nn

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"protoherb/torch"
)

// ModulePrefix is what nn.DataParallel and DistributedDataParallel put before every name.
const ModulePrefix = "module."

// StateDictKeys are the keys under which a checkpoint dict holds its model's state dict, in the
// order they are looked for: {"state_dict": ...} (PyTorch Lightning, most training scripts) and
// {"model": ...} (torchvision's reference scripts, DeiT, ...).
var StateDictKeys = []string{"state_dict", "model"}

// ReadWeights reads a weights file into new CPU tensors by name (owned by the caller: free them
// with FreeTensors), with its metadata (safetensors only). The format is told by the content:
//
//   - safetensors;
//   - a PyTorch file as torch.save writes it (.pth, .pt; the zip format), holding a state dict, or
//     a dict holding one under "state_dict" or "model" (read with libtorch's own unpickler).
//
// Names are PyTorch's, so torchvision's ResNet-18/50 files load into the resnet18/50 backbones
// as they are (their fc is the classifier head). A "module." prefix on every name (a model saved
// from DataParallel) is stripped, with a notice.
func ReadWeights(path string) (map[string]*torch.Tensor, map[string]string, error) {
	isZip, err := zipMagic(path)
	if err != nil {
		return nil, nil, err
	}
	var ts map[string]*torch.Tensor
	var meta map[string]string
	if isZip {
		ts, err = readTorchFile(path)
	} else {
		ts, meta, err = LoadSafetensors(path)
	}
	if err != nil {
		return nil, nil, err
	}
	if StripModulePrefix(ts) {
		slog.Info("nn: every tensor name starts with \"module.\" (saved from DataParallel): prefix stripped", "file", path)
	}
	return ts, meta, nil
}

// zipMagic reports whether the file starts as a zip archive does (torch.save's format).
func zipMagic(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [4]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && n == 0 {
		return false, fmt.Errorf("%s: empty file: not a weights file", path)
	}
	if b[0] == 0x80 && n >= 2 && b[1] <= 5 {
		return true, nil // a bare pickle: torch.save's legacy format, which LoadPickle explains
	}
	return bytes.Equal(b[:n], []byte("PK\x03\x04")), nil
}

// IsTorchScript reports whether path is a TorchScript module as torch.jit.save writes it: a zip
// archive with constants.pkl beside data.pkl, where torch.save's holds data.pkl and data/ only.
func IsTorchScript(path string) bool {
	z, err := zip.OpenReader(path)
	if err != nil {
		return false
	}
	defer z.Close()
	for _, f := range z.File {
		if strings.Count(f.Name, "/") == 1 && strings.HasSuffix(f.Name, "/constants.pkl") {
			return true
		}
	}
	return false
}

// readTorchFile picks the state dict out of a torch.save file and frees the file's other tensors.
func readTorchFile(path string) (map[string]*torch.Tensor, error) {
	all, err := torch.LoadPickle(path)
	if err != nil {
		return nil, err
	}
	picked, where, err := pickStateDict(all)
	if err != nil {
		for _, p := range all {
			p.T.Free()
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make(map[string]*torch.Tensor, len(picked))
	for i, p := range all {
		if picked[i] {
			out[p.Keys[len(p.Keys)-1]] = p.T
		} else {
			p.T.Free()
		}
	}
	if where != "" {
		slog.Info("nn: weights read from the file's state dict", "file", path, "key", where, "tensors", len(out))
	}
	return out, nil
}

// pickStateDict marks the tensors of the state dict in a torch.save file's tensors: those at the
// root (a bare state dict) or under one of StateDictKeys. It returns which key it used ("" for the
// root).
func pickStateDict(all []torch.PickledTensor) ([]bool, string, error) {
	picked := make([]bool, len(all))
	under := func(key string) int {
		n := 0
		for i, p := range all {
			if (key == "" && len(p.Keys) == 1) || (key != "" && len(p.Keys) == 2 && p.Keys[0] == key) {
				picked[i] = true
				n++
			}
		}
		return n
	}
	for _, k := range StateDictKeys {
		if under(k) > 0 {
			return picked, k, nil
		}
	}
	if under("") > 0 {
		return picked, "", nil
	}
	seen := map[string]bool{}
	for _, p := range all {
		seen[strings.Join(p.Keys[:len(p.Keys)-1], "/")] = true
	}
	var where []string
	for k := range seen {
		where = append(where, k)
	}
	sort.Strings(where)
	if len(where) == 0 {
		return nil, "", fmt.Errorf("no tensors: not a state dict")
	}
	return nil, "", fmt.Errorf("no state dict at the top level or under %s; the file's tensors are under %s",
		strings.Join(StateDictKeys, " or "), abbrev(where))
}

// StripModulePrefix removes "module." from every name when every name has it, and reports whether
// it did.
func StripModulePrefix(ts map[string]*torch.Tensor) bool {
	if len(ts) == 0 {
		return false
	}
	for k := range ts {
		if !strings.HasPrefix(k, ModulePrefix) {
			return false
		}
	}
	old := make(map[string]*torch.Tensor, len(ts))
	for k, t := range ts {
		old[k] = t
		delete(ts, k)
	}
	for k, t := range old {
		ts[strings.TrimPrefix(k, ModulePrefix)] = t
	}
	return true
}

// TrainingOnly reports whether a tensor belongs to a part of a trained model that embedding
// leaves out: a classifier head (fc.*) or the episodic metric's temperature (metric.*).
func TrainingOnly(name string) bool {
	return strings.HasPrefix(name, "fc.") || strings.HasPrefix(name, "metric.")
}

// LoadTrained loads a trained model's weights (read from the file or checkpoint from) into dst
// for embedding, as every path that embeds does: a "module." prefix on every name is stripped
// with a notice, then the weights load strictly (LoadStrict), leaving out TrainingOnly tensors.
func LoadTrained(dst []Param, src map[string]*torch.Tensor, from string) (LoadReport, error) {
	if StripModulePrefix(src) {
		slog.Info("nn: every tensor name starts with \"module.\" (saved from DataParallel): prefix stripped", "file", from)
	}
	return LoadStrict(dst, src, TrainingOnly)
}

// LoadStrict copies src into dst by name: every tensor of dst must be in src, and every tensor of
// src must be in dst unless ignore(name) says it belongs to a part the model leaves out (a
// classifier head at inference, say). Otherwise the error names the missing and unexpected
// tensors, and nothing is copied.
func LoadStrict(dst []Param, src map[string]*torch.Tensor, ignore func(name string) bool) (LoadReport, error) {
	kept := make(map[string]*torch.Tensor, len(src))
	have := make(map[string]bool, len(dst))
	for _, p := range dst {
		have[p.Name] = true
	}
	for k, t := range src {
		if have[k] || ignore == nil || !ignore(k) {
			kept[k] = t
		}
	}
	return LoadInto(dst, kept, true)
}
