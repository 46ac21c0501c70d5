package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"protoherb/demo/service"
	"protoherb/imageio"
	"protoherb/infer"
	"protoherb/proto"
	"protoherb/torch"
)

var (
	demoOnce sync.Once
	demo     *service.Demo
	demoErr  error
	demoDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if demoDir != "" {
		os.RemoveAll(demoDir)
	}
	os.Exit(code)
}

// getDemo builds the tiny demo service once per test binary.
func getDemo(t *testing.T) *service.Demo {
	t.Helper()
	demoOnce.Do(func() {
		demoDir, demoErr = os.MkdirTemp("", "serve-demo-")
		if demoErr == nil {
			demo, demoErr = service.Make(context.Background(), demoDir, service.Options{Species: 6, PerClass: 2, Seed: 7, Reseed: torch.ManualSeed})
		}
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	return demo
}

type testServer struct {
	*Server
	url    string
	protos string
	stop   func()
}

// start runs a server over the demo files (the prototypes copied to a test folder unless
// protos names one) on 127.0.0.1.
func start(t *testing.T, protos string, mod func(*Config)) *testServer {
	t.Helper()
	d := getDemo(t)
	if protos == "" {
		protos = filepath.Join(t.TempDir(), "prototypes.safetensors")
		b, err := os.ReadFile(d.Prototypes)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(protos, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	emb, err := infer.LoadModel(d.Model, infer.ModelSpec{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := proto.Open(protos, proto.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	idx, err := OpenIndex(d.Index, d.ImagesRoot)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Embedder: emb, Store: store, Index: idx, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	ts := &testServer{Server: s, url: "http://" + ln.Addr().String(), protos: protos}
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			s.Close()
			emb.Close()
		})
	}
	t.Cleanup(ts.stop)
	return ts
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body with a content type and decodes a JSON answer into out (when not nil).
func post(t *testing.T, url, ctype string, body []byte, hdr map[string]string, out any) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v in %s", url, err, b)
		}
	}
	if resp.StatusCode >= 300 {
		resp.Header.Set("X-Test-Body", string(b))
	}
	return resp
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v in %s", url, err, b)
		}
	}
	return resp.StatusCode
}

// form builds a multipart body: fields, then files under the field name "image".
func form(t *testing.T, fields map[string]string, images ...[]byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	for i, b := range images {
		fw, err := mw.CreateFormFile("image", fmt.Sprintf("img%d.jpg", i))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(b)
	}
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func TestIdentifyKnownImage(t *testing.T) {
	ts := start(t, "", nil)
	d := getDemo(t)
	for c := range d.Images {
		img := readFile(t, d.Images[c][1])
		var got IdentifyResponse
		// Raw body for even classes, multipart for odd ones.
		var resp *http.Response
		if c%2 == 0 {
			resp = post(t, ts.url+"/v1/identify?k=3", "image/jpeg", img, nil, &got)
		} else {
			body, ct := form(t, nil, img)
			resp = post(t, ts.url+"/v1/identify?k=3", ct, body, nil, &got)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("class %d: status %d: %s", c, resp.StatusCode, resp.Header.Get("X-Test-Body"))
		}
		if len(got.Species) != 3 {
			t.Fatalf("class %d: %d species, want 3", c, len(got.Species))
		}
		top := got.Species[0]
		if top.ID != int64(c) || top.Name != d.Species[c].Name || top.Genus != d.Species[c].Genus || top.Family != d.Species[c].Family {
			t.Errorf("class %d: top species %+v, want %+v", c, top, d.Species[c])
		}
		var sum float64
		for i, m := range got.Species {
			sum += m.Probability
			if i > 0 && (m.Distance < got.Species[i-1].Distance || m.Probability > got.Species[i-1].Probability) {
				t.Errorf("class %d: results not ordered: %+v", c, got.Species)
			}
		}
		if sum > 1+1e-9 || top.Probability <= 0 {
			t.Errorf("class %d: probabilities %+v", c, got.Species)
		}
		if len(got.Specimens) != 2 || got.Specimens[0].Row != 2*c+1 {
			t.Errorf("class %d: nearest specimens %+v, want rows of class %d with row %d first", c, got.Specimens, c, 2*c+1)
		}
	}
	// The thumbnail of a specimen is a JPEG.
	resp, err := http.Get(ts.url + "/v1/specimens/3/thumbnail")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || imageio.Sniff(b) != imageio.FormatJPEG {
		t.Fatalf("thumbnail: status %d, %d bytes", resp.StatusCode, len(b))
	}
	// k out of range is a 400.
	if r := post(t, ts.url+"/v1/identify?k=0", "image/jpeg", readFile(t, d.Images[0][0]), nil, nil); r.StatusCode != 400 {
		t.Errorf("k=0: status %d, want 400", r.StatusCode)
	}
	var sp SpeciesDetail
	if code := getJSON(t, ts.url+"/v1/species/2", &sp); code != 200 || sp.Name != d.Species[2].Name || sp.Count != 2 || sp.IndexSpecimens != 2 {
		t.Errorf("GET /v1/species/2: %d %+v", code, sp)
	}
	if code := getJSON(t, ts.url+"/v1/species/99", nil); code != 404 {
		t.Errorf("GET /v1/species/99: %d, want 404", code)
	}
	var h map[string]any
	if code := getJSON(t, ts.url+"/healthz", &h); code != 200 || h["status"] != "ok" {
		t.Errorf("healthz: %d %v", code, h)
	}
}

// metric returns the value of a sample line of /metrics starting with prefix.
func metric(t *testing.T, url, prefix string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// blockingEmbedder holds every forward pass until release is closed.
type blockingEmbedder struct {
	infer.Embedder
	entered chan struct{}
	release chan struct{}
}

func (b *blockingEmbedder) wrap(c *Config) { b.Embedder, c.Embedder = c.Embedder, b }

func (b *blockingEmbedder) Embed(x []float32, n int) ([]float32, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return b.Embedder.Embed(x, n)
}

func TestBatchingMergesConcurrentRequests(t *testing.T) {
	d := getDemo(t)
	gate := &blockingEmbedder{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ts := start(t, "", func(c *Config) {
		gate.wrap(c)
		c.MaxBatch = 8
		c.BatchWindow = time.Minute
	})
	img := readFile(t, d.Images[1][0])
	// The first request occupies the model; the next ones queue behind it and must share a batch.
	const n = 7
	var wg sync.WaitGroup
	codes := make([]int, n+1)
	tops := make([]int64, n+1)
	do := func(i int) {
		var got IdentifyResponse
		r := post(t, ts.url+"/v1/identify", "image/jpeg", img, nil, &got)
		codes[i] = r.StatusCode
		if len(got.Species) > 0 {
			tops[i] = got.Species[0].ID
		}
	}
	wg.Go(func() { do(0) })
	<-gate.entered
	for i := 1; i <= n; i++ {
		wg.Go(func() { do(i) })
	}
	// Wait until all of them are queued (the batcher only takes them once the model is free).
	for deadline := time.Now().Add(30 * time.Second); len(ts.batch.queue) < n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	close(gate.release)
	wg.Wait()
	for i, c := range codes {
		if c != 200 || tops[i] != 1 {
			t.Fatalf("request %d: status %d, top %d", i, c, tops[i])
		}
	}
	count := metric(t, ts.url, "protoherb_batch_size_count")
	sum := metric(t, ts.url, "protoherb_batch_size_sum")
	if count != 2 || sum != n+1 {
		t.Errorf("batches: %v forward passes for %v images, want 2 for %d", count, sum, n+1)
	}
	if sum/count <= 1 {
		t.Errorf("mean batch size %v, want > 1", sum/count)
	}
}

func TestOverloadAnswers503(t *testing.T) {
	d := getDemo(t)
	gate := &blockingEmbedder{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ts := start(t, "", func(c *Config) {
		gate.wrap(c)
		c.MaxConcurrent = 1
	})
	img := readFile(t, d.Images[0][0])
	var wg sync.WaitGroup
	wg.Go(func() {
		if r := post(t, ts.url+"/v1/identify", "image/jpeg", img, nil, nil); r.StatusCode != 200 {
			t.Errorf("first request: %d", r.StatusCode)
		}
	})
	<-gate.entered
	r := post(t, ts.url+"/v1/identify", "image/jpeg", img, nil, nil)
	close(gate.release)
	wg.Wait()
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("overloaded: status %d, Retry-After %q; want 503 with Retry-After", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if v := metric(t, ts.url, `protoherb_rejected_total{reason="overload"}`); v != 1 {
		t.Errorf("overload rejections %v, want 1", v)
	}
}

// bombPNG is a valid PNG header declaring w × h pixels, with a tiny (wrong) body.
func bombPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// IHDR width and height are at bytes 16..23; the CRC would be wrong, but the limit is checked
	// from the header before anything else, so fix it up to be a well-formed header.
	put := func(off, v int) { b[off], b[off+1], b[off+2], b[off+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v) }
	put(16, w)
	put(20, h)
	crc := crc32.ChecksumIEEE(b[12:29])
	put(29, int(crc))
	return b
}

func TestBadInput(t *testing.T) {
	ts := start(t, "", func(c *Config) { c.MaxUploadBytes = 64 << 10; c.MaxPixels = 1 << 20 })
	d := getDemo(t)
	before := metric(t, ts.url, "protoherb_images_decoded_total")
	// A decompression bomb: 100,000 × 100,000 pixels declared in a few hundred bytes.
	r := post(t, ts.url+"/v1/identify", "image/png", bombPNG(t, 100000, 100000), nil, nil)
	if r.StatusCode != 413 && r.StatusCode != 422 {
		t.Errorf("bomb: status %d, want 413 or 422 (%s)", r.StatusCode, r.Header.Get("X-Test-Body"))
	}
	// Just over the limit also.
	r = post(t, ts.url+"/v1/identify", "image/png", bombPNG(t, 1025, 1024), nil, nil)
	if r.StatusCode != 413 {
		t.Errorf("1025×1024 PNG: status %d, want 413", r.StatusCode)
	}
	if after := metric(t, ts.url, "protoherb_images_decoded_total"); after != before {
		t.Errorf("bombs were decoded: %v decodes, want %v", after, before)
	}
	// Not an image.
	if r := post(t, ts.url+"/v1/identify", "application/octet-stream", []byte("GIF89a not supported here"), nil, nil); r.StatusCode != 415 {
		t.Errorf("GIF: status %d, want 415", r.StatusCode)
	}
	// Corrupt JPEG: a valid header, truncated.
	img := readFile(t, d.Images[0][0])
	if r := post(t, ts.url+"/v1/identify", "image/jpeg", img[:200], nil, nil); r.StatusCode != 422 {
		t.Errorf("truncated JPEG: status %d, want 422", r.StatusCode)
	}
	// Over the upload limit.
	big := append(bytes.Clone(img), make([]byte, 70<<10)...)
	if r := post(t, ts.url+"/v1/identify", "image/jpeg", big, nil, nil); r.StatusCode != 413 {
		t.Errorf("oversized upload: status %d, want 413", r.StatusCode)
	}
	body, ct := form(t, nil, big)
	if r := post(t, ts.url+"/v1/identify", ct, body, nil, nil); r.StatusCode != 413 {
		t.Errorf("oversized multipart upload: status %d, want 413", r.StatusCode)
	}
}

func TestEnrolPersistsAndSurvivesRestart(t *testing.T) {
	d := getDemo(t)
	ts := start(t, "", nil)
	protos := ts.protos
	// Class 5's images enrolled under a new name become a new species; an image of class 5 is then
	// as close to the new species as to class 5 (identical prototypes): both lead.
	imgs := [][]byte{readFile(t, d.Images[5][0]), readFile(t, d.Images[5][1])}
	body, ct := form(t, map[string]string{"name": "Quercus nova", "genus": "Quercus", "family": "Fagaceae"}, imgs...)
	var er EnrolResponse
	r := post(t, ts.url+"/v1/species", ct, body, nil, &er)
	if r.StatusCode != 201 || !er.Created || er.Added != 2 || er.Species.Name != "Quercus nova" || er.Species.Count != 2 || er.Species.ID != 6 {
		t.Fatalf("enrol: status %d %+v (%s)", r.StatusCode, er, r.Header.Get("X-Test-Body"))
	}
	// Adding a specimen to an existing species.
	body, ct = form(t, map[string]string{"name": d.Species[0].Name}, readFile(t, d.Images[0][0]))
	r = post(t, ts.url+"/v1/species", ct, body, nil, &er)
	if r.StatusCode != 200 || er.Created || er.Species.ID != 0 || er.Species.Count != 3 {
		t.Fatalf("add specimen: status %d %+v", r.StatusCode, er)
	}
	check := func(url, when string) {
		var list struct {
			Total   int       `json:"total"`
			Species []Species `json:"species"`
		}
		if code := getJSON(t, url+"/v1/species?q=nova", &list); code != 200 || list.Total != 7 || len(list.Species) != 1 || list.Species[0].ID != 6 || list.Species[0].Count != 2 {
			t.Fatalf("%s: species list %d %+v", when, code, list)
		}
		var got IdentifyResponse
		post(t, url+"/v1/identify?k=2", "image/jpeg", imgs[0], nil, &got)
		if len(got.Species) != 2 || math.Abs(got.Species[0].Distance-got.Species[1].Distance) > 1e-3*(1+got.Species[0].Distance) ||
			!((got.Species[0].ID == 5 && got.Species[1].ID == 6) || (got.Species[0].ID == 6 && got.Species[1].ID == 5)) {
			t.Fatalf("%s: identify after enrolment: %+v", when, got.Species)
		}
		var sp SpeciesDetail
		if getJSON(t, url+"/v1/species/0", &sp); sp.Count != 3 {
			t.Fatalf("%s: species 0 has %d specimens, want 3", when, sp.Count)
		}
	}
	check(ts.url, "before restart")
	ts.stop()
	ts2 := start(t, protos, nil)
	check(ts2.url, "after restart")
}

func TestFailedEnrolmentLeavesFileUnchanged(t *testing.T) {
	d := getDemo(t)
	ts := start(t, "", nil)
	orig := readFile(t, ts.protos)
	good := readFile(t, d.Images[0][0])
	cases := []struct {
		name   string
		fields map[string]string
		images [][]byte
		want   int
	}{
		{"corrupt second image", map[string]string{"name": "Rosa nova"}, [][]byte{good, good[:300]}, 422},
		{"unsupported image", map[string]string{"name": "Rosa nova"}, [][]byte{good, []byte("not an image")}, 415},
		{"no name", map[string]string{"genus": "Rosa"}, [][]byte{good}, 400},
		{"no image", map[string]string{"name": "Rosa nova"}, nil, 400},
		{"conflicting genus", map[string]string{"name": d.Species[0].Name, "genus": "Betula"}, [][]byte{good}, 422},
	}
	for _, c := range cases {
		body, ct := form(t, c.fields, c.images...)
		if r := post(t, ts.url+"/v1/species", ct, body, nil, nil); r.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, r.StatusCode, c.want, r.Header.Get("X-Test-Body"))
		}
		if !bytes.Equal(readFile(t, ts.protos), orig) {
			t.Fatalf("%s: the prototype file changed", c.name)
		}
	}
	// A store that cannot be written (its folder made read-only) fails the enrolment and keeps
	// both the file and the served species as they were.
	if os.Geteuid() != 0 {
		dir := filepath.Dir(ts.protos)
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o755)
		body, ct := form(t, map[string]string{"name": "Rosa nova"}, good)
		if r := post(t, ts.url+"/v1/species", ct, body, nil, nil); r.StatusCode < 400 {
			t.Errorf("unwritable store: status %d, want an error", r.StatusCode)
		}
		if !bytes.Equal(readFile(t, ts.protos), orig) {
			t.Fatal("unwritable store: the prototype file changed")
		}
	}
	var list struct{ Total int }
	if getJSON(t, ts.url+"/v1/species", &list); list.Total != 6 {
		t.Errorf("species after failed enrolments: %d, want 6", list.Total)
	}
}

func TestAuthForWrites(t *testing.T) {
	d := getDemo(t)
	ts := start(t, "", func(c *Config) { c.Token = "s3cret" })
	body, ct := form(t, map[string]string{"name": "Salvia nova"}, readFile(t, d.Images[3][0]))
	for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}} {
		r := post(t, ts.url+"/v1/species", ct, body, hdr, nil)
		if r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("enrol with %v: status %d, want 401 with WWW-Authenticate", hdr, r.StatusCode)
		}
	}
	r := post(t, ts.url+"/v1/species", ct, body, map[string]string{"Authorization": "Bearer s3cret"}, nil)
	if r.StatusCode != 201 {
		t.Errorf("enrol with the token: status %d, want 201 (%s)", r.StatusCode, r.Header.Get("X-Test-Body"))
	}
	// Reads need no token.
	if r := post(t, ts.url+"/v1/identify", "image/jpeg", readFile(t, d.Images[3][0]), nil, nil); r.StatusCode != 200 {
		t.Errorf("identify without a token: status %d, want 200", r.StatusCode)
	}
	var info map[string]any
	if getJSON(t, ts.url+"/v1/info", &info); info["auth_required"] != true {
		t.Errorf("info: %v", info)
	}
}

func TestTemperature(t *testing.T) {
	ts := start(t, "", func(c *Config) { c.Temperature = 2.5 })
	if v, src := ts.Temperature(); v != 2.5 || src != "flag" {
		t.Errorf("temperature %v (%s), want 2.5 from the flag", v, src)
	}
	ts2 := start(t, "", func(c *Config) { c.Index = nil })
	if v, src := ts2.Temperature(); !(v > 0) || !strings.Contains(src, "median") {
		t.Errorf("temperature without an index %v (%s)", v, src)
	}
	p := softmax([]float32{0, 1, 2}, 1)
	if d := p[0] - 1/(1+0.36787944117144233+0.1353352832366127); d > 1e-12 || d < -1e-12 {
		t.Errorf("softmax %v", p)
	}
}

func TestChunkedForwardMatchesWholeBatch(t *testing.T) {
	d := getDemo(t)
	whole, err := infer.LoadModel(d.Model, infer.ModelSpec{})
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	chunked, err := infer.LoadModel(d.Model, infer.ModelSpec{Chunk: 2, ChannelsLast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer chunked.Close()
	var x []float32
	for c := range 5 {
		v, err := imageio.Preprocess(readFile(t, d.Images[c][0]), whole.Transform(), 0)
		if err != nil {
			t.Fatal(err)
		}
		x = append(x, v...)
	}
	a, err := whole.Embed(x, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := chunked.Embed(x, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) || len(a) != 5*whole.Dim() {
		t.Fatalf("lengths %d and %d, want %d", len(a), len(b), 5*whole.Dim())
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-4*(1+math.Abs(float64(a[i]))) {
			t.Fatalf("value %d: %v whole, %v in chunks of 2", i, a[i], b[i])
		}
	}
}

// A client that sends its headers and then stalls is cut off by the read timeout instead of
// holding its connection (and a concurrency slot) for ever.
func TestSlowClientIsCutOff(t *testing.T) {
	ts := start(t, "", func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n\xff\xd8\xff")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(conn) // returns when the server closes the connection
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server kept a stalled upload open for 30 s")
	}
	if len(b) > 0 && !strings.Contains(string(b), " 400 ") && !strings.Contains(string(b), " 408 ") && !strings.Contains(string(b), " 413 ") {
		t.Errorf("stalled upload answered %q", b)
	}
	// The slot was released: a normal request still succeeds.
	if r := post(t, ts.url+"/v1/identify", "image/jpeg", readFile(t, getDemo(t).Images[0][0]), nil, nil); r.StatusCode != 200 {
		t.Errorf("after the stalled client: status %d", r.StatusCode)
	}
}

// With no prototype file yet the server starts with no species; the first enrolment creates the
// file (in package proto's format) and makes the species identifiable.
func TestStartEmptyThenEnrol(t *testing.T) {
	d := getDemo(t)
	path := filepath.Join(t.TempDir(), "new.safetensors")
	s, closeAll, err := Open(Files{Model: d.Model, Prototypes: path}, infer.ModelSpec{},
		Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	url := "http://" + ln.Addr().String()
	img := readFile(t, d.Images[4][0])
	var got IdentifyResponse
	if r := post(t, url+"/v1/identify", "image/jpeg", img, nil, &got); r.StatusCode != 200 || len(got.Species) != 0 {
		t.Fatalf("identify with no species: %d %+v", r.StatusCode, got)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("an empty prototype file was written before any enrolment")
	}
	body, ct := form(t, map[string]string{"name": "Festuca rubra", "genus": "Festuca", "family": "Poaceae"}, img)
	var er EnrolResponse
	if r := post(t, url+"/v1/species", ct, body, nil, &er); r.StatusCode != 201 || er.Species.ID != 0 {
		t.Fatalf("first enrolment: %d %+v", r.StatusCode, er)
	}
	st, err := proto.Load(path)
	if err != nil || st.Len() != 1 || st.Count(0) != 1 {
		t.Fatalf("the new prototype file: %v (%v classes)", err, st)
	}
	if r := post(t, url+"/v1/identify", "image/jpeg", img, nil, &got); r.StatusCode != 200 || len(got.Species) != 1 || got.Species[0].Name != "Festuca rubra" {
		t.Fatalf("identify after the first enrolment: %d %+v", r.StatusCode, got)
	}
}

// A retried enrolment (same Idempotency-Key) is applied once; the temperature chosen without an
// index follows the enrolments and is the same after a restart.
func TestIdempotentEnrolmentAndRecordedTemperature(t *testing.T) {
	d := getDemo(t)
	ts := start(t, "", func(c *Config) { c.Index = nil })
	t0, _ := ts.Temperature()
	body, ct := form(t, map[string]string{"name": "Betula nova"}, readFile(t, d.Images[2][0]))
	hdr := map[string]string{"Idempotency-Key": "retry-me"}
	var first, second EnrolResponse
	if r := post(t, ts.url+"/v1/species", ct, body, hdr, &first); r.StatusCode != 201 || !first.Created {
		t.Fatalf("enrol: %d %+v", r.StatusCode, first)
	}
	if r := post(t, ts.url+"/v1/species", ct, body, hdr, &second); r.StatusCode != 200 || !second.Replayed ||
		second.Species.ID != first.Species.ID || second.Species.Count != 1 {
		t.Fatalf("retried enrol: %d %+v", r.StatusCode, second)
	}
	t1, src := ts.Temperature()
	if t1 == t0 || !strings.Contains(src, "median") {
		t.Errorf("temperature %v (%s) after enrolling a new species, %v before", t1, src, t0)
	}
	ts.stop()
	ts2 := start(t, ts.protos, func(c *Config) { c.Index = nil })
	if t2, src := ts2.Temperature(); t2 != t1 || !strings.Contains(src, "recorded") {
		t.Errorf("temperature after a restart %v (%s), before %v", t2, src, t1)
	}
}
