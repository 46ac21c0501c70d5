// Package servebench is the load test of `protoherb bench serve`: it starts a server on 127.0.0.1,
// drives it with concurrent identify and enrolment clients under a load mix (normal, or with
// decompression bombs or stalled uploads next to it), and checks that no acknowledged enrolment is
// lost, live and after reloading the prototype file. It sees the server only from outside: HTTP,
// its /metrics and the file.
package servebench

import (
	"bufio"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"protoherb/infer"
	"protoherb/proto"
	"protoherb/serve"
)

// Options configure a load test.
type Options struct {
	// Clients: the concurrency levels, one run each.
	Clients  []int
	Duration time.Duration
	// EnrolClients run next to the identify clients, each enrolling one specimen at a time into a
	// species of its own, pausing EnrolPause between enrolments.
	EnrolClients int
	EnrolPause   time.Duration
	// Files to serve; Prototypes is copied first (enrolments must not touch the original).
	Files serve.Files
	Spec  infer.ModelSpec
	// Images are the query images (JPEG/PNG bytes), used round-robin.
	Images [][]byte
	// Mixes: each client level runs under each load mix (MixNormal, MixBombs, MixStalled).
	Mixes  []string
	Config serve.Config
	Out    io.Writer
}

// Level is the result at one concurrency level.
type Level struct {
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

// Report is the whole load test.
type Report struct {
	Levels []Level
	// Lost enrolments: acknowledged but missing from the species counts or from the file after a
	// reload.
	Lost int
	// EnrolLatencies of every acknowledged enrolment (HTTP, embedding included), sorted.
	EnrolLatencies []time.Duration
}

// Run starts a server on 127.0.0.1, drives it with each number of concurrent identify clients
// for Duration (plus enrolment clients), and checks that no acknowledged enrolment was lost, live
// and after reloading the prototype file.
func Run(ctx context.Context, o Options) (*Report, error) {
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
	s, closeAll, err := serve.Open(o.Files, o.Spec, o.Config)
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
	b := &benchClient{o: o, base: "http://" + ln.Addr().String(), enrolled: map[string]int{}, rep: &Report{},
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

func (o *Options) defaults() {
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
	o      Options
	base   string
	client *http.Client
	imgs   *abuseImages

	mu       sync.Mutex
	enrolled map[string]int // acknowledged specimens per species
	rep      *Report        // EnrolLatencies appended under mu
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
	var r serve.IdentifyResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("identify: status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != 200 || len(r.Species) == 0 {
		return fmt.Errorf("identify: status %d", resp.StatusCode)
	}
	return nil
}

// level runs one mix at one number of identify clients (with the enrolment clients) for Duration.
func (b *benchClient) level(ctx context.Context, run benchRun) Level {
	o, c := b.o, run.clients
	b0, n0 := b.batchTotals(ctx)
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
	b1, n1 := b.batchTotals(ctx)
	lv := Level{Clients: c, Requests: len(all), Errors: int(errs.Load()),
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
	var list struct{ Species []serve.Species }
	if err := b.getJSON(context.Background(), "/v1/species", &list); err != nil {
		return fmt.Errorf("bench serve: listing the species: %w", err)
	}
	live := map[string]int64{}
	for _, sp := range list.Species {
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

// batchTotals returns the number of forward passes and the images they held so far, from the
// server's /metrics (zeros when it cannot be read).
func (b *benchClient) batchTotals(ctx context.Context) (batches, images float64) {
	req, err := http.NewRequestWithContext(ctx, "GET", b.base+"/metrics", nil)
	if err != nil {
		return 0, 0
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, _ := strings.Cut(sc.Text(), " ")
		switch name {
		case "protoherb_batch_size_count":
			batches, _ = strconv.ParseFloat(v, 64)
		case "protoherb_batch_size_sum":
			images, _ = strconv.ParseFloat(v, 64)
		}
	}
	return batches, images
}

// getJSON decodes the answer of GET path.
func (b *benchClient) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", b.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
