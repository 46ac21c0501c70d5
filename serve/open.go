package serve

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"protoherb/search"
)

// Files names what a server is built from.
type Files struct {
	Model      string // checkpoint folder, run folder or .safetensors (LoadModel)
	Prototypes string // FileStore; created empty when missing
	Metric     string // of a new prototype file: l2 (default) or cosine
	Index      string // optional specimen index (embeddings of the training set)
	ImagesRoot string // where the index's image paths are
	TokenFile  string // optional bearer token for the write endpoints
}

// Open loads the model, prototypes, index and token named by f and builds a Server with cfg's
// settings. The returned close frees the server and the model.
func Open(f Files, spec ModelSpec, cfg Config) (*Server, func(), error) {
	emb, err := LoadModel(f.Model, spec)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*Server, func(), error) { emb.Close(); return nil, nil, err }
	var store *FileStore
	if _, err := os.Stat(f.Prototypes); errors.Is(err, fs.ErrNotExist) {
		m, err := search.ParseMetric(cmp(f.Metric, "l2"))
		if err != nil {
			return fail(err)
		}
		if store, err = NewFileStore(f.Prototypes, emb.Dim(), m); err != nil {
			return fail(err)
		}
		if cfg.Logger != nil {
			cfg.Logger.Warn("serve: no prototype file: created an empty one; enrol species to fill it", "path", f.Prototypes)
		}
	} else if store, err = OpenFileStore(f.Prototypes); err != nil {
		return fail(err)
	}
	if f.Index != "" {
		if cfg.Index, err = OpenIndex(f.Index, f.ImagesRoot); err != nil {
			return fail(err)
		}
	}
	if f.TokenFile != "" {
		b, err := os.ReadFile(f.TokenFile)
		if err != nil {
			return fail(fmt.Errorf("token file: %w", err))
		}
		if cfg.Token = strings.TrimSpace(string(b)); cfg.Token == "" {
			return fail(fmt.Errorf("token file %s is empty", f.TokenFile))
		}
	}
	cfg.Embedder, cfg.Store = emb, store
	s, err := New(cfg)
	if err != nil {
		return fail(err)
	}
	return s, func() { s.Close(); emb.Close() }, nil
}
