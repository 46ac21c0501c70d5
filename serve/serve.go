// Package serve is protoherb's identification service: an HTTP server that embeds uploaded
// specimen images with a trained model, ranks the species by distance to their prototypes, shows
// the nearest training specimens, and enrols new species live; plus the web page that uses it.
//
// # API (JSON)
//
//	POST /v1/identify?k=5      multipart field "image", or a raw JPEG/PNG body: top-k species with
//	                           id, name, genus, family, distance and probability, and the nearest
//	                           training specimens of the top species when an index is loaded
//	GET  /v1/species[?q=&limit=]  the species known, with taxonomy and specimen counts
//	GET  /v1/species/{id}      one species
//	POST /v1/species           multipart: name, genus, family, one or more "image" parts: enrol a
//	                           species or add specimens (bearer token when configured); with an
//	                           Idempotency-Key header a retry is applied once ("replayed": true)
//	GET  /v1/info              model, limits and calibration
//	GET  /v1/specimens/{row}/thumbnail   a training specimen's JPEG thumbnail
//	GET  /healthz, /metrics    liveness; Prometheus metrics (private registry)
//	GET  /                     the web page (embedded HTML/CSS/JS)
//
// # Batching
//
// Identify requests are decoded in their own goroutines and their tensors queued to one batcher
// goroutine that runs a forward pass per batch (see batcher): a batch takes what is queued and
// waits, at most BatchWindow, only while admitted requests are still being read or decoded, up
// to MaxBatch images. A lone client is not delayed; under load the batches fill. The prototype
// search of a batch is one search too (one matrix product against all prototypes).
//
// # Probabilities
//
// probability = softmax(−distance/T) over the min(C, max(k, 64)) nearest prototypes (the mass of
// farther classes is negligible at any useful T). T is Config.Temperature when set; otherwise the
// one recorded in the prototype file for its build; otherwise it is fitted when the server starts, by minimising the negative log-likelihood of the training
// specimens' labels in the index (up to 4,096 of them, each against its class's leave-one-out
// prototype so the fit is not overconfident; a 1-D search over log T); with no index it
// is the median distance between a prototype and its nearest other prototype divided by ln 20,
// so that a query lying on a prototype gets about 95% against its nearest rival (kept up to date
// at each enrolment in O(species × dimension) by proto.Index; a fit on the index is kept). The
// choice is recorded in the prototype file, so a restart serves the same probabilities.
//
// # Prototypes
//
// The prototype file is package proto's (what `protoherb prototypes` writes: per-class embedding
// sums and counts, with the build to apply), served through proto.Index: queries go through the
// build's transform (normalisation, centering) before the search; an enrolment takes the file's
// lock, reads the file again if another writer (`prototypes add`) changed it, adds to a copy of
// the sums, rebuilds, saves atomically and only then swaps the copy in, so a failed enrolment
// changes nothing and no writer's enrolment is lost.
//
// # Limits
//
// Each upload is read whole, before the request takes any compute slot, within BodyTimeout (408)
// and MaxUploadBytes (413); the bytes being received by all requests share UploadBudget (503
// when full), so a stalled upload costs its connection and the bytes it sent, nothing else. The
// image header is then read and the pixel count checked against MaxPixels before any pixel is
// decoded (413: a decompression bomb is never decoded), and the decode's memory (width × height ×
// bytes per pixel, from the header) is taken from DecodeBudget, a weighted semaphore shared by
// identification and enrolment: decodes wait their turn rather than add up past it. Anything but
// JPEG or PNG is 415; a corrupt image 422. More than MaxConcurrent identify requests past their
// upload are answered 503 with Retry-After.
//
// # Access
//
// POST /v1/species changes state: a browser request from another origin is refused (403, by
// Sec-Fetch-Site or Origin: no web page can enrol through a visitor's browser), and with a token it
// needs "Authorization: Bearer TOKEN" (401; the scheme in any case). Serve refuses a non-loopback
// listener without a token unless OpenEnrolment is set. A failure of the server's disk during an
// enrolment is a 5xx that names no server path; temporary files left by a crash mid-write are
// removed at start-up.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"protoherb/imageio"
	"protoherb/infer"
	"protoherb/torch"
)

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	Embedder infer.Embedder
	Store    Store
	// Index of training specimens (optional): nearest specimens and thumbnails, and the
	// temperature fit.
	Index *Index
	// Temperature of the softmax over −distance (0 = automatic, see the package comment).
	Temperature float64
	// MaxBatch images per forward pass (32); BatchWindow the longest a batch waits (5ms).
	MaxBatch    int
	BatchWindow time.Duration
	// MaxConcurrent identify requests in flight before 503 (4 × MaxBatch).
	MaxConcurrent int
	// MaxUploadBytes per image (20 MiB; an enrolment may send 8×); MaxPixels per image, checked
	// before decoding (DefaultMaxPixels).
	MaxUploadBytes int64
	MaxPixels      int
	// DecodeBudget bounds the bytes that all decodes in progress hold (DefaultDecodeBudget);
	// UploadBudget the bytes of uploads being received (DefaultUploadBudget).
	DecodeBudget, UploadBudget int64
	// BodyTimeout bounds the reading of a request's body, from the handler's start (30s).
	BodyTimeout time.Duration
	// OpenEnrolment lets Serve listen on a non-loopback address without a Token.
	OpenEnrolment bool
	// MaxK bounds ?k= (100).
	MaxK int
	// Token, when set, is required as a bearer token by the write endpoints.
	Token string
	// ReadTimeout (60s) and WriteTimeout (60s) of a request; ReadHeaderTimeout 10s; IdleTimeout 120s.
	ReadTimeout, WriteTimeout time.Duration
	Logger                    *slog.Logger
}

func (c *Config) defaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 32
	}
	if c.BatchWindow <= 0 {
		c.BatchWindow = 5 * time.Millisecond
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 4 * c.MaxBatch
	}
	if c.MaxUploadBytes <= 0 {
		c.MaxUploadBytes = 20 << 20
	}
	if c.MaxPixels <= 0 {
		c.MaxPixels = DefaultMaxPixels
	}
	if c.DecodeBudget <= 0 {
		c.DecodeBudget = DefaultDecodeBudget
	}
	if c.UploadBudget <= 0 {
		c.UploadBudget = DefaultUploadBudget
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 30 * time.Second
	}
	if c.MaxK <= 0 {
		c.MaxK = 100
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 60 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is the identification service.
type Server struct {
	cfg     Config
	log     *slog.Logger
	met     *metrics
	batch   *batcher
	sem     chan struct{}
	decode  *weighted // DecodeBudget
	uploads *weighted // UploadBudget
	procs   chan *proc
	mux     *http.ServeMux
	stop    context.CancelFunc
	stopped chan struct{}

	autoTemp bool // temperature chosen by the server (re-estimated after enrolments without an index)

	enrolMu sync.Mutex // one enrolment at a time: store write + index rebuild stay in step

	mu         sync.RWMutex // guards species and the temperature
	species    map[int64]Species
	temp       float64
	tempSource string
}

// New checks cfg, builds the prototype index, calibrates the temperature and starts the batcher.
// Close it when done.
func New(cfg Config) (*Server, error) {
	cfg.defaults()
	if cfg.Embedder == nil || cfg.Store == nil {
		return nil, errors.New("serve: a model and a prototype store are required")
	}
	if d, e := cfg.Store.Dim(), cfg.Embedder.Dim(); d != e {
		return nil, fmt.Errorf("serve: the prototypes are %d-d but the model embeds %d-d: they come from different models", d, e)
	}
	if cfg.Index != nil && cfg.Index.Dim() != cfg.Embedder.Dim() {
		return nil, fmt.Errorf("serve: the specimen index is %d-d but the model embeds %d-d", cfg.Index.Dim(), cfg.Embedder.Dim())
	}
	s := &Server{cfg: cfg, log: cfg.Logger, met: newMetrics(), sem: make(chan struct{}, cfg.MaxConcurrent),
		decode: newWeighted(cfg.DecodeBudget), uploads: newWeighted(cfg.UploadBudget),
		procs: make(chan *proc, runtime.GOMAXPROCS(0)*2), stopped: make(chan struct{})}
	s.met.budgets(s.decode, s.uploads)
	if p, ok := cfg.Store.(interface{ Path() string }); ok {
		removeStaleTemps(p.Path(), s.log)
	}
	if err := s.rebuild(); err != nil {
		return nil, err
	}
	s.temp, s.tempSource = cfg.Temperature, "flag"
	if s.temp <= 0 {
		s.autoTemp = true
		s.temp, s.tempSource = s.calibrate()
	}
	s.log.Info("serve: calibrated", "temperature", s.temp, "source", s.tempSource, "species", len(s.species))
	s.batch = newBatcher(cfg.Embedder, cfg.MaxBatch, cfg.BatchWindow, func(n int) { s.met.batchSize.Observe(float64(n)) })
	s.batch.search = s.searchBatch
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() {
		// One OS thread for every forward pass and search, so libtorch keeps one OpenMP pool for
		// them; the thread ends with the batcher.
		torch.LockComputeThread()
		s.batch.run(ctx)
		close(s.stopped)
	}()
	s.routes()
	return s, nil
}

// Close stops the batcher and frees the search index and the decoders.
func (s *Server) Close() {
	s.stop()
	<-s.stopped
	for {
		select {
		case p := <-s.procs:
			p.close()
		default:
			return
		}
	}
}

// Temperature returns the softmax temperature in use and how it was chosen.
func (s *Server) Temperature() (float64, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.temp, s.tempSource
}

// Handler is the service's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve answers HTTP on ln until ctx ends, then shuts down gracefully (up to 10 s). It refuses a
// listener other machines can reach when anyone could enrol (no Token, no OpenEnrolment).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.checkExposure(ln.Addr()); err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	return nil
}

// rebuild reads the species from the store (at start and after an enrolment).
func (s *Server) rebuild() error {
	sp := map[int64]Species{}
	for _, c := range s.cfg.Store.Species() {
		sp[c.ID] = c
	}
	s.mu.Lock()
	s.species = sp
	s.mu.Unlock()
	s.met.species.Set(float64(len(sp)))
	return nil
}

// proc is one goroutine's image decoder.
type proc struct {
	p *imageio.Processor
	d *imageio.Decoder
}

func (p *proc) close() { p.p.Close(); p.d.Close() }

func (s *Server) getProc() (*proc, error) {
	select {
	case p := <-s.procs:
		return p, nil
	default:
	}
	pp, err := imageio.NewProcessor()
	if err != nil {
		return nil, err
	}
	d, err := imageio.NewDecoder()
	if err != nil {
		pp.Close()
		return nil, err
	}
	return &proc{p: pp, d: d}, nil
}

func (s *Server) putProc(p *proc) {
	select {
	case s.procs <- p:
	default:
		p.close()
	}
}
