package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"protoherb/infer"
	"protoherb/proto"
)

// BenchOptions configure a load test.
type BenchOptions struct {
	// Clients: the concurrency levels, one run each.
	Clients  []int
	Duration time.Duration
	// EnrolClients run next to the identify clients, each enrolling one specimen at a time into a
	// species of its own, pausing EnrolPause between enrolments.
	EnrolClients int
	EnrolPause   time.Duration
	// Files to serve; Prototypes is copied first (enrolments must not touch the original).
	Files Files
	Spec  infer.ModelSpec
	// Images are the query images (JPEG/PNG bytes), used round-robin.
	Images [][]byte
	// Mixes: each client level runs under each load mix (MixNormal, MixBombs, MixStalled).
	Mixes  []string
	Config Config
	Out    io.Writer
}

// BenchLevel is the result at one concurrency level.
type BenchLevel struct {
	Clients           int
	Requests, Errors  int
	RequestsPerSecond float64
	P50, P95, P99     time.Duration
	MeanBatch         float64
	Enrolments        int
	EnrolErrors       int
	// Mix is the load mix; Abusive the abusive requests sent, AbusiveRefused those refused or
	// cut off; PeakRSS the process's peak resident bytes during the run (server and clients).
	Mix                     string
	Abusive, AbusiveRefused int
	PeakRSS                 int64
}

// BenchReport is the whole load test.
type BenchReport struct {
	Levels []BenchLevel
	// Lost enrolments: acknowledged but missing from the species counts or from the file after a
	// reload.
	Lost int
	// EnrolLatencies of every acknowledged enrolment (HTTP, embedding included), sorted.
	EnrolLatencies []time.Duration
}

// Bench starts a server on 127.0.0.1, drives it with each number of concurrent identify clients
// for Duration (plus enrolment clients), and checks that no acknowledged enrolment was lost, live
// and after reloading the prototype file.
func Bench(ctx context.Context, o BenchOptions) (*BenchReport, error) {
	if len(o.Images) == 0 {
		return nil, errors.New("bench serve: no query images")
	}
	o.defaults()
	tmp, err := os.MkdirTemp("", "protoherb-bench-serve-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if o.Files.Prototypes != "" { // enrolments go to a copy
		b, err := os.ReadFile(o.Files.Prototypes)
		if err != nil {
			return nil, err
		}
		o.Files.Prototypes = filepath.Join(tmp, "prototypes.safetensors")
		if err := os.WriteFile(o.Files.Prototypes, b, 0o644); err != nil {
			return nil, err
		}
	}
	s, closeAll, err := Open(o.Files, o.Spec, o.Config)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, ln) }()
	defer func() { stop(); <-served }()
	maxC := slices.Max(o.Clients)
	b := &benchClient{o: o, s: s, base: "http://" + ln.Addr().String(), enrolled: map[string]int{}, rep: &BenchReport{},
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 2 * (maxC + o.EnrolClients), MaxIdleConnsPerHost: 2 * (maxC + o.EnrolClients)}}}
	defer b.client.CloseIdleConnections()
	// Warm-up: a few requests, so libtorch and the connections are ready.
	for i := range 4 {
		if err := b.identify(ctx, o.Images[i%len(o.Images)]); err != nil {
			return nil, fmt.Errorf("bench serve: warm-up: %w", err)
		}
	}
	runs, imgs, err := benchRuns(o.Mixes, o.Clients)
	if err != nil {
		return nil, err
	}
	b.imgs = imgs
	for _, run := range runs {
		if err := ctx.Err(); err != nil {
			return b.rep, err
		}
		lv := b.level(ctx, run)
		b.rep.Levels = append(b.rep.Levels, lv)
		fmt.Fprintf(o.Out, "mix=%s clients=%d requests=%d errors=%d requests/s=%.1f p50=%s p95=%s p99=%s mean-batch=%.1f enrolments=%d enrol-errors=%d abusive=%d abusive-refused=%d peak-rss=%dMiB\n",
			run.mix, lv.Clients, lv.Requests, lv.Errors, lv.RequestsPerSecond, ms(lv.P50), ms(lv.P95), ms(lv.P99), lv.MeanBatch, lv.Enrolments, lv.EnrolErrors,
			lv.Abusive, lv.AbusiveRefused, lv.PeakRSS>>20)
	}
	slices.Sort(b.rep.EnrolLatencies)
	return b.rep, b.checkLost()
}

func (o *BenchOptions) defaults() {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.EnrolPause <= 0 {
		o.EnrolPause = 100 * time.Millisecond
	}
	if o.Config.Logger == nil {
		o.Config.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Config.MaxConcurrent <= 0 && len(o.Clients) > 0 {
		o.Config.MaxConcurrent = max(4*max(o.Config.MaxBatch, 32), 2*slices.Max(o.Clients))
	}
}

// benchClient drives the server under test.
type benchClient struct {
	o      BenchOptions
	s      *Server
	base   string
	client *http.Client
	imgs   *abuseImages

	mu       sync.Mutex
	enrolled map[string]int // acknowledged specimens per species
	rep      *BenchReport   // EnrolLatencies appended under mu
}

func (b *benchClient) identify(ctx context.Context, img []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", b.base+"/v1/identify?k=5", bytes.NewReader(img))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "image/jpeg")
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r IdentifyResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("identify: status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != 200 || len(r.Species) == 0 {
		return fmt.Errorf("identify: status %d", resp.StatusCode)
	}
	return nil
}

// level runs one mix at one number of identify clients (with the enrolment clients) for Duration.
func (b *benchClient) level(ctx context.Context, run benchRun) BenchLevel {
	o, c := b.o, run.clients
	b0, n0 := b.s.batchTotals()
	lctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	resetPeakRSS()
	start := time.Now()
	ab := startAbuse(lctx, run.mix, b.base, b.client, b.imgs)
	lat := make([][]time.Duration, c)
	var errs, enrols, enrolErrs atomic.Int64
	var wg sync.WaitGroup
	for i := range c {
		wg.Go(func() {
			for j := i; lctx.Err() == nil; j += c {
				t := time.Now()
				err := b.identify(lctx, o.Images[j%len(o.Images)])
				if lctx.Err() != nil {
					return // cut off by the end of the run: not counted
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				lat[i] = append(lat[i], time.Since(t))
			}
		})
	}
	for e := range o.EnrolClients {
		name := fmt.Sprintf("Benchia enrolata c%d-%d", c, e)
		wg.Go(func() {
			for j := e; ; j++ {
				select {
				case <-lctx.Done():
					return
				case <-time.After(o.EnrolPause):
				}
				// Not cut off by the end of the run: an enrolment in flight completes and counts.
				if err := b.enrol(ctx, name, o.Images[j%len(o.Images)]); err != nil {
					enrolErrs.Add(1)
					continue
				}
				enrols.Add(1)
			}
		})
	}
	wg.Wait()
	cancel()
	ab.stop()
	el := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	b1, n1 := b.s.batchTotals()
	lv := BenchLevel{Clients: c, Requests: len(all), Errors: int(errs.Load()),
		RequestsPerSecond: float64(len(all)) / el.Seconds(), P50: pct(all, 50), P95: pct(all, 95), P99: pct(all, 99),
		Enrolments: int(enrols.Load()), EnrolErrors: int(enrolErrs.Load()),
		Mix: run.mix, Abusive: int(ab.sent.Load()), AbusiveRefused: int(ab.refused.Load()), PeakRSS: peakRSS()}
	if b1 > b0 {
		lv.MeanBatch = (n1 - n0) / (b1 - b0)
	}
	return lv
}

// enrol adds one specimen to species name and records the acknowledgement and its latency.
func (b *benchClient) enrol(ctx context.Context, name string, img []byte) error {
	t := time.Now()
	if err := enrolOne(ctx, b.client, b.base, name, img); err != nil {
		return err
	}
	b.mu.Lock()
	b.enrolled[name]++
	b.rep.EnrolLatencies = append(b.rep.EnrolLatencies, time.Since(t))
	b.mu.Unlock()
	return nil
}

// checkLost counts the acknowledged enrolments missing live or from the file after a reload.
func (b *benchClient) checkLost() error {
	live := map[string]int64{}
	for _, sp := range b.s.cfg.Store.Species() {
		live[sp.Name] = sp.Count
	}
	re, err := proto.Load(b.o.Files.Prototypes)
	if err != nil {
		return fmt.Errorf("bench serve: reloading the prototypes: %w", err)
	}
	saved := map[string]int64{}
	for _, c := range re.Classes() {
		saved[c.Name] = re.Count(c.ID)
	}
	total := 0
	for name, n := range b.enrolled {
		total += n
		b.rep.Lost += max(0, n-int(live[name])) + max(0, n-int(saved[name]))
	}
	fmt.Fprintf(b.o.Out, "enrolments: %d acknowledged in %d species, lost %d (checked live and after reloading %s)\n",
		total, len(b.enrolled), b.rep.Lost, filepath.Base(b.o.Files.Prototypes))
	return nil
}

func enrolOne(ctx context.Context, client *http.Client, base, name string, img []byte) error {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("name", name)
	_ = mw.WriteField("genus", "Benchia")
	_ = mw.WriteField("family", "Benchiaceae")
	fw, _ := mw.CreateFormFile("image", "specimen.jpg")
	_, _ = fw.Write(img)
	_ = mw.Close()
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/species", &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 && resp.StatusCode != 201 {
		return fmt.Errorf("enrol: status %d", resp.StatusCode)
	}
	return nil
}

// batchTotals returns the number of forward passes and the images they held so far.
func (s *Server) batchTotals() (batches, images float64) {
	mfs, err := s.met.reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "protoherb_batch_size" && len(mf.GetMetric()) > 0 {
			h := mf.GetMetric()[0].GetHistogram()
			return float64(h.GetSampleCount()), h.GetSampleSum()
		}
	}
	return 0, 0
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
