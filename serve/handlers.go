package serve

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"protoherb/imageio"
)

//go:embed web
var webFS embed.FS

// maxEnrolImages bounds the images of one enrolment request.
const maxEnrolImages = 64

func (s *Server) routes() {
	m := http.NewServeMux()
	in := s.met.instrument
	m.HandleFunc("POST /v1/identify", in("identify", s.identify))
	m.HandleFunc("GET /v1/species", in("species_list", s.listSpecies))
	m.HandleFunc("GET /v1/species/{id}", in("species_get", s.getSpecies))
	m.HandleFunc("POST /v1/species", in("species_enrol", s.guardWrite(s.enrol)))
	m.HandleFunc("GET /v1/info", in("info", s.info))
	m.HandleFunc("GET /v1/specimens/{row}/thumbnail", in("thumbnail", s.thumbnail))
	m.HandleFunc("GET /healthz", in("healthz", func(w http.ResponseWriter, r *http.Request) {
		s.mu.RLock()
		n := len(s.species)
		s.mu.RUnlock()
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "species": n})
	}))
	m.Handle("GET /metrics", s.met.handler())
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(static)
	m.Handle("GET /", in("page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	s.mux = m
}

// apiError is an error with its HTTP status.
type apiError struct {
	code   int
	reason string // metrics label, or ""
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func fail(code int, reason, format string, args ...any) *apiError {
	return &apiError{code: code, reason: reason, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

func (s *Server) writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		// The details (file paths, library messages) are for the log, not the client.
		ae = &apiError{code: http.StatusInternalServerError, msg: "internal error: see the server's log"}
		s.log.Error("serve: request failed", "err", err)
	}
	if ae.reason != "" {
		s.met.rejected.WithLabelValues(ae.reason).Inc()
	}
	writeJSON(w, ae.code, map[string]string{"error": ae.msg})
}

// readErr maps a body read error to its status.
func readErr(err error, limit int64) error {
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return fail(http.StatusRequestEntityTooLarge, "too_large", "upload larger than the limit of %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fail(http.StatusRequestTimeout, "slow_upload", "the upload was not received in time")
	case errors.Is(err, errUploadsFull):
		return fail(http.StatusServiceUnavailable, "overload", "%v; retry shortly", err)
	}
	return fail(http.StatusBadRequest, "", "reading the upload: %v", err)
}

// preprocess checks an uploaded image and turns it into the model's input. The header is read
// and the pixel count checked before any pixel is decoded; the decode then waits (until ctx ends)
// for its memory from the decode budget.
func (s *Server) preprocess(ctx context.Context, b []byte) ([]float32, error) {
	if imageio.Sniff(b) == imageio.FormatUnknown {
		return nil, fail(http.StatusUnsupportedMediaType, "unsupported", "unsupported image type: send a JPEG or PNG")
	}
	p, err := s.getProc()
	if err != nil {
		return nil, err
	}
	f, w, h, err := p.d.Config(b)
	if err != nil {
		s.putProc(p)
		return nil, imageErr(err, s.cfg.MaxPixels)
	}
	if int64(w)*int64(h) > int64(s.cfg.MaxPixels) {
		s.putProc(p)
		return nil, fail(http.StatusRequestEntityTooLarge, "too_large", "image of %d×%d pixels exceeds the limit of %d pixels", w, h, s.cfg.MaxPixels)
	}
	tf := s.cfg.Embedder.Transform()
	cost := decodeCost(b, f, w, h, tf)
	if cost > s.cfg.DecodeBudget {
		s.putProc(p)
		return nil, fail(http.StatusRequestEntityTooLarge, "too_large", "image of %d×%d pixels needs %d MiB to decode, more than the decode budget of %d MiB", w, h, cost>>20, s.cfg.DecodeBudget>>20)
	}
	if err := s.decode.acquire(ctx, cost); err != nil {
		s.putProc(p)
		return nil, fail(http.StatusServiceUnavailable, "overload", "gave up waiting for decode memory: %v", err)
	}
	defer s.decode.release(cost)
	if cost > retainLimit {
		defer p.close() // its grown pixel buffer goes with it
	} else {
		defer s.putProc(p)
	}
	c := tf.Channels
	if c == 0 {
		c = 3
	}
	out := make([]float32, c*tf.Size*tf.Size)
	s.met.decoded.Inc()
	if err := p.p.Tensor(b, &tf, nil, 0, s.cfg.MaxPixels, out); err != nil {
		return nil, imageErr(err, s.cfg.MaxPixels)
	}
	return out, nil
}

func imageErr(err error, maxPixels int) error {
	switch {
	case errors.Is(err, imageio.ErrTooLarge):
		return fail(http.StatusRequestEntityTooLarge, "too_large", "%v (limit %d pixels)", err, maxPixels)
	case errors.Is(err, imageio.ErrUnsupported):
		return fail(http.StatusUnsupportedMediaType, "unsupported", "%v", err)
	case errors.Is(err, imageio.ErrCorrupt):
		return fail(http.StatusUnprocessableEntity, "corrupt", "%v", err)
	}
	return fail(http.StatusUnprocessableEntity, "corrupt", "cannot read the image: %v", err)
}

// IdentifyResponse is the answer of POST /v1/identify.
type IdentifyResponse struct {
	Species []Match `json:"species"`
	// Specimens are the training specimens of the top species nearest to the query (with an index).
	Specimens   []Specimen `json:"specimens,omitempty"`
	Temperature float64    `json:"temperature"`
}

func (s *Server) identify(w http.ResponseWriter, r *http.Request) {
	k := 5
	if v := r.URL.Query().Get("k"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.MaxK {
			s.writeErr(w, fail(http.StatusBadRequest, "", "k must be an integer from 1 to %d", s.cfg.MaxK))
			return
		}
		k = n
	}
	// The whole upload first: a slow or stalled client holds no slot while it sends.
	defer s.upload(w, r, s.cfg.MaxUploadBytes+64<<10)() // room for the multipart framing
	b, err := s.readImage(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	select {
	case s.sem <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		s.writeErr(w, fail(http.StatusServiceUnavailable, "overload", "too many requests in flight (%d); retry shortly", cap(s.sem)))
		return
	}
	defer func() { <-s.sem }()
	s.met.inflight.Inc()
	defer s.met.inflight.Dec()
	arrived := s.batch.expect()
	defer arrived()
	x, err := s.preprocess(r.Context(), b)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	arrived()
	j, err := s.batch.do(r.Context(), x, k)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	res, temp := s.matches(j.dist, j.ids, k)
	out := IdentifyResponse{Species: res, Temperature: temp}
	if s.cfg.Index != nil && len(res) > 0 {
		out.Specimens = s.cfg.Index.Nearest(j.out, res[0].ID, 6)
	}
	writeJSON(w, http.StatusOK, out)
}

// readImage reads the image of an identify request (its body prepared by upload): the multipart
// field "image" (or the first file part), or the raw body.
func (s *Server) readImage(r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxUploadBytes
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			return nil, readErr(err, limit)
		}
		if int64(len(b)) > limit {
			return nil, fail(http.StatusRequestEntityTooLarge, "too_large", "upload larger than the limit of %d bytes", limit)
		}
		if len(b) == 0 {
			return nil, fail(http.StatusBadRequest, "", "empty body: send a JPEG or PNG, raw or as the multipart field \"image\"")
		}
		return b, nil
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fail(http.StatusBadRequest, "", "multipart: %v", err)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, fail(http.StatusBadRequest, "", "no \"image\" field in the form")
		}
		if err != nil {
			return nil, readErr(err, limit)
		}
		if part.FormName() == "image" || part.FileName() != "" {
			b, err := readPart(part, limit)
			if err != nil {
				return nil, err
			}
			return b, nil
		}
	}
}

func readPart(part io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(part, limit+1))
	if err != nil {
		return nil, readErr(err, limit)
	}
	if int64(len(b)) > limit {
		return nil, fail(http.StatusRequestEntityTooLarge, "too_large", "image larger than the limit of %d bytes", limit)
	}
	return b, nil
}

// SpeciesDetail is a species with the training specimens the index holds for it.
type SpeciesDetail struct {
	Species
	IndexSpecimens int `json:"index_specimens"`
}

func (s *Server) listSpecies(w http.ResponseWriter, r *http.Request) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	limit := -1
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.writeErr(w, fail(http.StatusBadRequest, "", "limit must be a non-negative integer"))
			return
		}
		limit = n
	}
	all := s.cfg.Store.Species()
	out := make([]Species, 0, len(all))
	for _, c := range all {
		if q != "" && !strings.Contains(strings.ToLower(c.Name+" "+c.Genus+" "+c.Family), q) {
			continue
		}
		if limit >= 0 && len(out) >= limit {
			break
		}
		out = append(out, c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": len(all), "species": out})
}

func (s *Server) getSpecies(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.writeErr(w, fail(http.StatusBadRequest, "", "species id must be an integer"))
		return
	}
	for _, c := range s.cfg.Store.Species() {
		if c.ID == id {
			d := SpeciesDetail{Species: c}
			if s.cfg.Index != nil {
				d.IndexSpecimens = len(s.cfg.Index.byClass[id])
			}
			writeJSON(w, http.StatusOK, d)
			return
		}
	}
	s.writeErr(w, fail(http.StatusNotFound, "", "no species %d", id))
}

// EnrolResponse is the answer of POST /v1/species.
type EnrolResponse struct {
	Species Species `json:"species"`
	Created bool    `json:"created"`
	Added   int     `json:"added"`
	// Replayed: the request's Idempotency-Key was already applied; nothing was added again.
	Replayed bool `json:"replayed,omitempty"`
}

func (s *Server) enrol(w http.ResponseWriter, r *http.Request) {
	limit := s.cfg.MaxUploadBytes
	defer s.upload(w, r, 8*limit)()
	sp, images, err := readEnrolForm(r, limit)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if strings.TrimSpace(sp.Name) == "" {
		s.writeErr(w, fail(http.StatusBadRequest, "", "the species needs a name"))
		return
	}
	if len(images) == 0 {
		s.writeErr(w, fail(http.StatusBadRequest, "", "send at least one image"))
		return
	}
	// Preprocess every image first: one bad image refuses the whole enrolment.
	xs, err := s.preprocessAll(r.Context(), images)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	embs, err := s.embedAll(r.Context(), xs)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	got, err := s.enrolEmbeddings(sp.Class, embs, r.Header.Get("Idempotency-Key"))
	if err != nil {
		s.writeErr(w, err)
		return
	}
	code := http.StatusOK
	if got.Created {
		code = http.StatusCreated
	}
	writeJSON(w, code, EnrolResponse{Species: got.Species, Created: got.Created, Added: got.Added, Replayed: got.Replayed})
}

// readEnrolForm reads the multipart form of an enrolment (its body prepared by upload with a limit
// of 8*limit): the species from the name, genus and family fields, and the images (the fields image
// and images, or any file part), each at most limit bytes and at most maxEnrolImages of them. Other
// fields are skipped.
func readEnrolForm(r *http.Request, limit int64) (Species, [][]byte, error) {
	var sp Species
	mr, err := r.MultipartReader()
	if err != nil {
		return sp, nil, fail(http.StatusBadRequest, "", "send multipart/form-data with name, genus, family and image fields: %v", err)
	}
	var images [][]byte
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return sp, images, nil
		}
		if err != nil {
			return sp, nil, readErr(err, 8*limit)
		}
		switch name := part.FormName(); {
		case name == "image" || name == "images" || part.FileName() != "":
			if len(images) == maxEnrolImages {
				return sp, nil, fail(http.StatusRequestEntityTooLarge, "too_large", "at most %d images per enrolment", maxEnrolImages)
			}
			b, err := readPart(part, limit)
			if err != nil {
				return sp, nil, err
			}
			images = append(images, b)
		case name == "name" || name == "genus" || name == "family":
			v, err := readEnrolField(part, name, 8*limit)
			if err != nil {
				return sp, nil, err
			}
			switch name {
			case "name":
				sp.Name = v
			case "genus":
				sp.Genus = v
			default:
				sp.Family = v
			}
		}
	}
}

// readEnrolField reads the text field name of an enrolment form, at most 256 bytes, with the
// surrounding space trimmed; bodyLimit is the body's limit, cited when that is what stopped it.
func readEnrolField(part io.Reader, name string, bodyLimit int64) (string, error) {
	b, err := io.ReadAll(io.LimitReader(part, 257))
	if err != nil {
		return "", readErr(err, bodyLimit)
	}
	if len(b) > 256 {
		return "", fail(http.StatusBadRequest, "", "%s is longer than 256 bytes", name)
	}
	return strings.TrimSpace(string(b)), nil
}

// preprocessAll preprocesses the images of an enrolment in order, stopping at the first that fails;
// the error names that image (counting from 1).
func (s *Server) preprocessAll(ctx context.Context, images [][]byte) ([][]float32, error) {
	xs := make([][]float32, len(images))
	for i, b := range images {
		x, err := s.preprocess(ctx, b)
		if err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				ae.msg = fmt.Sprintf("image %d: %s", i+1, ae.msg)
			}
			return nil, err
		}
		xs[i] = x
	}
	return xs, nil
}

// embedAll embeds images through the batcher (they join the identify batches).
func (s *Server) embedAll(ctx context.Context, xs [][]float32) ([]float32, error) {
	d := s.cfg.Embedder.Dim()
	out := make([]float32, len(xs)*d)
	errs := make([]error, len(xs))
	var wg sync.WaitGroup
	for i, x := range xs {
		wg.Go(func() {
			e, err := s.batch.embed(ctx, x)
			if err == nil {
				copy(out[i*d:], e)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	tf := s.cfg.Embedder.Transform()
	s.mu.RLock()
	n := len(s.species)
	temp, src := s.temp, s.tempSource
	s.mu.RUnlock()
	idx := 0
	if s.cfg.Index != nil {
		idx = s.cfg.Index.Len()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"species": n, "embedding_dim": s.cfg.Embedder.Dim(), "image_size": tf.Size, "channels": tf.Channels,
		"metric": "l2", "temperature": temp, "temperature_source": src,
		"index_specimens": idx, "auth_required": s.cfg.Token != "", "max_upload_bytes": s.cfg.MaxUploadBytes,
		"max_pixels": s.cfg.MaxPixels, "max_k": s.cfg.MaxK, "max_batch": s.cfg.MaxBatch,
		"decode_budget_bytes": s.cfg.DecodeBudget,
	})
}

func (s *Server) thumbnail(w http.ResponseWriter, r *http.Request) {
	row, err := strconv.Atoi(r.PathValue("row"))
	if err != nil || s.cfg.Index == nil || row < 0 || row >= s.cfg.Index.Len() {
		s.writeErr(w, fail(http.StatusNotFound, "", "no specimen %q", r.PathValue("row")))
		return
	}
	b, err := s.cfg.Index.Thumbnail(row)
	if err != nil {
		s.log.Warn("serve: thumbnail", "row", row, "err", err)
		s.writeErr(w, fail(http.StatusNotFound, "", "specimen %d has no readable image", row))
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	_, _ = w.Write(b)
}
