package infer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"protoherb/imageio"
	"protoherb/progress"
)

// EmbedFunc maps n preprocessed images (NCHW float32) to n embeddings.
type EmbedFunc func(x []float32, n int) ([]float32, error)

// EmbedItems loads items with the loader options, embeds them batch by batch and hands each batch to
// fn with the items' positions. Images that cannot be read are skipped and returned (the rest are
// embedded), unless opt.OnBad is imageio.Fail. The loader decodes the next batches while a batch
// is embedded; at the end the run's Throughput (which part bounds it) is logged.
func EmbedItems(ctx context.Context, items []imageio.Item, opt imageio.LoaderOptions, embed EmbedFunc, bar *progress.Bar,
	fn func(index []int, vectors []float32) error) ([]imageio.BadImage, error) {
	l, err := imageio.NewLoader(opt)
	if err != nil {
		return nil, err
	}
	st := l.Stream(ctx, items, 0)
	defer st.Close()
	tp := Throughput{Workers: l.Workers(), Cores: runtime.NumCPU()}
	t0, cpu0 := time.Now(), ProcessCPU()
	for {
		tw := time.Now()
		b, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		tp.Wait += time.Since(tw)
		tp.Decode += b.Decode
		if b.N > 0 {
			tf := time.Now()
			v, err := embed(b.X, b.N)
			if err != nil {
				return nil, err
			}
			tp.Forward += time.Since(tf)
			tp.Images += b.N
			if err := fn(b.Index, v); err != nil {
				return nil, err
			}
		}
		bar.Add(b.N + len(b.Bad))
	}
	bar.Finish()
	tp.Wall, tp.CPU = time.Since(t0), ProcessCPU()-cpu0
	if tp.Images > 0 {
		slog.Info("embedded", "throughput", tp.String())
	}
	return st.Bad(), nil
}

// Fingerprint identifies a model by the bytes of its weights: a SHA-256 over the .safetensors files
// at path (the file itself, or every one under a folder, by relative name), shortened, after the
// folder or file name.
func Fingerprint(path string) (string, error) {
	h := sha256.New()
	var files []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (p == path || filepath.Ext(p) == ".safetensors") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("model fingerprint: %w", err)
	}
	if len(files) == 0 {
		return "", fmt.Errorf("model fingerprint: no .safetensors file under %s", path)
	}
	slices.Sort(files)
	for _, f := range files {
		rel, _ := filepath.Rel(path, f)
		io.WriteString(h, rel+"\x00")
		r, err := os.Open(f)
		if err != nil {
			return "", fmt.Errorf("model fingerprint: %w", err)
		}
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", fmt.Errorf("model fingerprint: %s: %w", f, err)
		}
	}
	return filepath.Base(filepath.Clean(path)) + "@" + hex.EncodeToString(h.Sum(nil))[:16], nil
}
