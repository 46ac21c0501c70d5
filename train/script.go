package train

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"protoherb/atomicfile"
)

// scriptPrefix marks a TorchScript backbone in Config.Backbone.
const scriptPrefix = "torchscript:"

// ScriptCopy is the name of a run's own copy of its TorchScript backbone.
const ScriptCopy = "backbone.pt"

// ownScript makes the run folder self-sufficient when the backbone is a TorchScript module: it
// copies the module into the run folder (atomically) and returns the backbone naming the copy,
// which the run's config and checkpoints then record, so that `embed --model RUN` and --resume
// work after the original file moves. A resumed run that already holds a copy keeps it (the
// original may be gone). Other backbones are returned unchanged.
func ownScript(backbone, runDir string, resume bool) (string, error) {
	src, ok := strings.CutPrefix(backbone, scriptPrefix)
	if !ok {
		return backbone, nil
	}
	dst, err := filepath.Abs(filepath.Join(runDir, ScriptCopy))
	if err != nil {
		return "", fmt.Errorf("backbone copy: %w", err)
	}
	if abs, err := filepath.Abs(src); err == nil && abs == dst {
		return backbone, nil
	}
	if _, err := os.Stat(dst); err == nil && resume {
		slog.Info("train: resuming with the run's copy of the TorchScript backbone", "copy", dst, "given", src)
		return scriptPrefix + dst, nil
	}
	if err := copyFile(dst, src); err != nil {
		return "", fmt.Errorf("backbone %s: copy into the run folder: %w", src, err)
	}
	return scriptPrefix + dst, nil
}

// copyFile copies src to dst atomically (dst appears whole or not at all).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.WriteFile(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}
