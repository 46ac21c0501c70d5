package serve

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"protoherb/infer"
	"protoherb/proto"
	"protoherb/torch"
)

// Files names what a server is built from.
type Files struct {
	Model      string // checkpoint folder, run folder or .safetensors (infer.LoadModel)
	Prototypes string // proto store file (protoherb prototypes); started empty when missing
	// Build changes the Build recorded in the prototype file (the options of `protoherb
	// prototypes`); nil serves the prototypes as recorded.
	Build      proto.BuildEdit
	Index      string // optional specimen index (embeddings of the training set)
	ImagesRoot string // where the index's image paths are
	TokenFile  string // optional bearer token for the write endpoints
}

// Open loads the model, prototypes, index and token named by f and builds a Server with cfg's
// settings. The returned close frees the server and the model. Loading and calibrating run on a
// throwaway OS thread (torch.OnThrowawayThread), so that the only OpenMP pool left is the batcher's.
func Open(f Files, spec infer.ModelSpec, cfg Config) (s *Server, closeAll func(), err error) {
	torch.OnThrowawayThread(func() { s, closeAll, err = load(f, spec, cfg) })
	return s, closeAll, err
}

// load is Open on the calling thread.
func load(f Files, spec infer.ModelSpec, cfg Config) (*Server, func(), error) {
	emb, err := infer.LoadModel(f.Model, spec)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*Server, func(), error) { emb.Close(); return nil, nil, err }
	var store *proto.Index
	if _, err := os.Stat(f.Prototypes); errors.Is(err, fs.ErrNotExist) {
		// Written at the first enrolment (an empty file has nothing to keep).
		b, err := f.Build.Apply(proto.Build{})
		if err != nil {
			return fail(err)
		}
		if store, err = proto.Create(f.Prototypes, emb.Dim(), filepath.Base(filepath.Clean(f.Model)), proto.Options{}, b, proto.OpenOptions{}); err != nil {
			return fail(err)
		}
		if cfg.Logger != nil {
			cfg.Logger.Warn("serve: no prototype file yet: starting with no species; enrolments will create it", "path", f.Prototypes)
		}
	} else if store, err = proto.Open(f.Prototypes, proto.OpenOptions{Edit: f.Build}); err != nil {
		return fail(err)
	}
	fail = func(err error) (*Server, func(), error) { store.Close(); emb.Close(); return nil, nil, err }
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
	return s, func() { s.Close(); store.Close(); emb.Close() }, nil
}
