package serve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"protoherb/imageio"

	"protoherb/proto"
)

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
	}
}

func (w *weighted) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiters.Len()
}

func TestWeightedIsFIFOAndCancellable(t *testing.T) {
	w := newWeighted(10)
	if !w.tryAcquire(6) || w.tryAcquire(5) {
		t.Fatal("tryAcquire: 6 of 10 must fit, then 5 must not")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// A large waiter first, then a small one that would fit now: the small one must not overtake.
	wg.Go(func() {
		if err := w.acquire(context.Background(), 8); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the first waiter", func() bool { return w.waiting() == 1 })
	wg.Go(func() {
		if err := w.acquire(context.Background(), 2); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the second waiter", func() bool { return w.waiting() == 2 })
	// A cancelled waiter leaves the queue and takes nothing.
	errc := make(chan error, 1)
	go func() { errc <- w.acquire(ctx, 1) }()
	waitFor(t, "the third waiter", func() bool { return w.waiting() == 3 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	if w.tryAcquire(1) {
		t.Fatal("tryAcquire overtook queued waiters")
	}
	if w.waiting() != 2 || w.used() != 6 {
		t.Fatalf("%d waiting, %d in use; want the 8 and the 2 waiting (the 2 behind the 8), 6 in use", w.waiting(), w.used())
	}
	w.release(6) // both fit now, in order
	wg.Wait()
	if w.used() != 10 || w.waiting() != 0 {
		t.Fatalf("in use %d, %d waiting; want 10 and none", w.used(), w.waiting())
	}
}

// A small decode is not held up behind a large one waiting for memory.
func TestWeightedSmallSkipsTheQueue(t *testing.T) {
	w := newWeighted(640) // small: up to 10
	if !w.tryAcquire(600) {
		t.Fatal("tryAcquire(600) of 640")
	}
	done := make(chan error, 1)
	go func() { done <- w.acquire(context.Background(), 100) }()
	waitFor(t, "the large waiter", func() bool { return w.waiting() == 1 })
	if !w.tryAcquire(10) {
		t.Fatal("a small request waited behind a large one")
	}
	if w.tryAcquire(20) {
		t.Fatal("a request larger than small overtook the queue")
	}
	w.release(600)
	if err := <-done; err != nil || w.used() != 110 {
		t.Fatalf("large waiter: %v, in use %d; want nil and 110", err, w.used())
	}
}

// realPNG encodes a w×h opaque RGB image.
func realPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Issue 14, point 3: the 7000×7000 PNG that cost ~450 MB to decode is refused by the default
// pixel limit before decoding.
func TestDefaultPixelLimitRefusesTheIssuesBomb(t *testing.T) {
	ts := start(t, "", nil)
	before := metric(t, ts.url, "protoherb_images_decoded_total")
	r := post(t, ts.url+"/v1/identify", "image/png", bombPNG(t, 7000, 7000), nil, nil)
	if r.StatusCode != 413 {
		t.Errorf("7000×7000 PNG with the default limits: status %d, want 413 (%s)", r.StatusCode, r.Header.Get("X-Test-Body"))
	}
	if after := metric(t, ts.url, "protoherb_images_decoded_total"); after != before {
		t.Errorf("the bomb was decoded")
	}
}

// Issue 14, point 3: decodes take their memory (from the header) from one budget shared by
// identification and enrolment; a decode that does not fit waits, and one that never could is 413.
func TestDecodeBudgetIsSharedAndWaitedFor(t *testing.T) {
	img := realPNG(t, 300, 200)
	_, w, h, err := func() (imageio.Format, int, int, error) {
		d, err := imageio.NewDecoder()
		if err != nil {
			return 0, 0, 0, err
		}
		defer d.Close()
		return d.Config(img)
	}()
	if err != nil {
		t.Fatal(err)
	}
	cost := decodeCost(img, imageio.FormatPNG, w, h, imageio.Transform{Size: 84})
	if cost != int64(300*200*7) {
		t.Fatalf("decode cost of a 300×200 RGB PNG: %d bytes, want %d (RGBA image + RGB copy)", cost, 300*200*7)
	}
	ts := start(t, "", func(c *Config) { c.DecodeBudget = cost })
	// Hold the whole budget, as a large decode in progress would.
	if err := ts.decode.acquire(context.Background(), cost); err != nil {
		t.Fatal(err)
	}
	codes := make(chan int, 2)
	go func() { codes <- post(t, ts.url+"/v1/identify", "image/png", img, nil, nil).StatusCode }()
	waitFor(t, "the identify decode to queue for the budget", func() bool { return ts.decode.waiting() == 1 })
	body, ct := form(t, map[string]string{"name": "Budgetia nova"}, img)
	go func() { codes <- post(t, ts.url+"/v1/species", ct, body, nil, nil).StatusCode }()
	waitFor(t, "the enrolment decode to queue for the budget", func() bool { return ts.decode.waiting() == 2 })
	if v := metric(t, ts.url, "protoherb_images_decoded_total"); v != 0 {
		t.Fatalf("%v images decoded while the budget was held, want 0", v)
	}
	ts.decode.release(cost)
	for range 2 {
		if c := <-codes; c != 200 && c != 201 {
			t.Errorf("after the budget was released: status %d", c)
		}
	}
	if ts.decode.used() != 0 {
		t.Errorf("%d bytes of the budget still held after the requests", ts.decode.used())
	}
	// An image that could never fit the budget is refused without waiting or decoding.
	r := post(t, ts.url+"/v1/identify", "image/png", realPNG(t, 301, 200), nil, nil)
	if r.StatusCode != 413 || !strings.Contains(r.Header.Get("X-Test-Body"), "decode budget") {
		t.Errorf("image over the decode budget: status %d (%s), want 413", r.StatusCode, r.Header.Get("X-Test-Body"))
	}
}

// A colour JPEG is decoded at a reduced DCT scale: its cost is that scaled image, which bounds
// what the decoder really allocates.
func TestDecodeCostOfAScaledJPEG(t *testing.T) {
	m := image.NewRGBA(image.Rect(0, 0, 1600, 1200))
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, nil); err != nil {
		t.Fatal(err)
	}
	tf := imageio.Transform{Size: 84, Resize: 96}
	// The crop needs a scale of 96/1200 = 0.08: 1/8, so 200×150 RGB.
	if c := decodeCost(buf.Bytes(), imageio.FormatJPEG, 1600, 1200, tf); c != 200*150*3 {
		t.Errorf("cost of a 1600×1200 JPEG for an 84 px crop: %d bytes, want %d", c, 200*150*3)
	}
	got, err := imageio.DecodeBytesScaled(buf.Bytes(), imageio.DecodeOptions{MinW: 128, MinH: 96})
	if err != nil {
		t.Fatal(err)
	}
	if n := int64(len(got.Pix)); n > decodeCost(buf.Bytes(), imageio.FormatJPEG, 1600, 1200, tf) {
		t.Errorf("the decoder allocated %d bytes, over the cost", n)
	}
	if p, n := jpegSOF(buf.Bytes()); p || n != 3 {
		t.Errorf("jpegSOF of a baseline colour JPEG: progressive %v, %d components", p, n)
	}
	// A progressive JPEG also holds its coefficients: 2 bytes per pixel and component.
	prog := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0, 0, 0xFF, 0xC2, 0x00, 0x0B, 8, 0x04, 0xB0, 0x06, 0x40, 1, 1, 0x11, 0}
	if p, n := jpegSOF(prog); !p || n != 1 {
		t.Errorf("jpegSOF of a progressive gray header: progressive %v, %d components", p, n)
	}
	// Full size when the crop needs it, and never more than the whole image.
	if c := decodeCost(buf.Bytes(), imageio.FormatJPEG, 1600, 1200, imageio.Transform{Size: 2000}); c != 1600*1200*3 {
		t.Errorf("cost for a crop larger than the image: %d, want %d", c, 1600*1200*3)
	}
}

// stall opens a connection that sends the headers and the first bytes of an upload, then stops.
func stall(t *testing.T, url, path, ctype string, first []byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 100000\r\n\r\n%s", path, ctype, first)
	return conn
}

// Issue 14, point 4: 130 uploads that stall (more than the 128 identify slots) cost no slot: a
// normal identification still answers 200 within 2 s.
func TestStalledUploadsHoldNoSlot(t *testing.T) {
	ts := start(t, "", nil)
	img := readFile(t, getDemo(t).Images[0][0])
	// One identification first, so the 2 s below never include libtorch's first-call set-up.
	if r := post(t, ts.url+"/v1/identify", "image/jpeg", img, nil, nil); r.StatusCode != 200 {
		t.Fatalf("warm-up identify: status %d", r.StatusCode)
	}
	first := []byte("\xff\xd8\xff\xe0")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 130 {
		conns = append(conns, stall(t, ts.url, "/v1/identify", "image/jpeg", first))
	}
	// Every stalled request is in its handler, reading: the bytes sent are charged to the uploads.
	waitFor(t, "the 130 uploads to be received", func() bool { return ts.uploads.used() == int64(130*len(first)) })
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Post(ts.url+"/v1/identify", "image/jpeg", bytes.NewReader(img))
	if err != nil {
		t.Fatalf("identify next to 130 stalled uploads: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("identify next to 130 stalled uploads: status %d: %s", resp.StatusCode, b)
	}
}

// Issue 14, point 4: the body is read under a deadline of its own (BodyTimeout), shorter than the
// connection's ReadTimeout: a stalled upload is answered 408 and its connection closed.
func TestStalledUploadIsCutOffByBodyTimeout(t *testing.T) {
	ts := start(t, "", func(c *Config) { c.BodyTimeout = 200 * time.Millisecond; c.ReadTimeout = time.Hour })
	for _, c := range []struct{ path, ctype, first string }{
		{"/v1/identify", "image/jpeg", "\xff\xd8"},
		{"/v1/species", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n\xff\xd8"},
	} {
		path := c.path
		conn := stall(t, ts.url, path, c.ctype, []byte(c.first))
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, err := io.ReadAll(conn)
		conn.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: a stalled upload was kept open for 20 s", path)
		}
		if !strings.Contains(string(b), " 408 ") {
			t.Errorf("%s: stalled upload answered %q, want 408", path, b)
		}
	}
	if v := metric(t, ts.url, `protoherb_rejected_total{reason="slow_upload"}`); v != 2 {
		t.Errorf("slow_upload rejections %v, want 2", v)
	}
	if ts.uploads.used() != 0 {
		t.Errorf("%d upload bytes still charged after the requests ended", ts.uploads.used())
	}
}

// Issue 14, point 4: the bytes being received by all requests share a budget; beyond it a request
// is refused (503), not buffered.
func TestUploadBudgetRefusesBeyond(t *testing.T) {
	img := readFile(t, getDemo(t).Images[0][0])
	ts := start(t, "", func(c *Config) { c.UploadBudget = int64(len(img)) - 1 })
	r := post(t, ts.url+"/v1/identify", "image/jpeg", img, nil, nil)
	if r.StatusCode != 503 {
		t.Errorf("upload over the upload budget: status %d, want 503 (%s)", r.StatusCode, r.Header.Get("X-Test-Body"))
	}
	if ts.uploads.used() != 0 {
		t.Errorf("%d upload bytes still charged", ts.uploads.used())
	}
}

func speciesTotal(t *testing.T, url string) int {
	t.Helper()
	var list struct{ Total int }
	if code := getJSON(t, url+"/v1/species", &list); code != 200 {
		t.Fatalf("species list: %d", code)
	}
	return list.Total
}

// Issue 14, point 5: a cross-site page cannot enrol through a visitor's browser.
func TestEnrolmentRefusesCrossOrigin(t *testing.T) {
	d := getDemo(t)
	ts := start(t, "", nil)
	body, ct := form(t, map[string]string{"name": "Csrfia nova"}, readFile(t, d.Images[1][0]))
	host := strings.TrimPrefix(ts.url, "http://")
	for _, hdr := range []map[string]string{
		{"Origin": "http://evil.example"},
		{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
		{"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},
		{"Sec-Fetch-Site": "cross-site"},
	} {
		r := post(t, ts.url+"/v1/species", ct, body, hdr, nil)
		if r.StatusCode != 403 {
			t.Errorf("enrol with %v: status %d, want 403", hdr, r.StatusCode)
		}
	}
	if n := speciesTotal(t, ts.url); n != len(d.Species) {
		t.Fatalf("%d species after refused cross-origin enrolments, want %d", n, len(d.Species))
	}
	// The server's own page, a user typing, and clients that are not browsers may enrol.
	for i, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "same-origin", "Origin": ts.url},
		{"Origin": ts.url},
		{"Sec-Fetch-Site": "none"},
		nil,
	} {
		body, ct := form(t, map[string]string{"name": fmt.Sprintf("Csrfia alba %d", i)}, readFile(t, d.Images[1][0]))
		if r := post(t, ts.url+"/v1/species", ct, body, hdr, nil); r.StatusCode != 201 {
			t.Errorf("enrol with %v (host %s): status %d, want 201 (%s)", hdr, host, r.StatusCode, r.Header.Get("X-Test-Body"))
		}
	}
	// Identification changes nothing and stays open to other origins.
	if r := post(t, ts.url+"/v1/identify", "image/jpeg", readFile(t, d.Images[1][0]), map[string]string{"Origin": "http://other.example"}, nil); r.StatusCode != 200 {
		t.Errorf("cross-origin identify: status %d, want 200", r.StatusCode)
	}
}

// Issue 14, point 5: the token is required whatever the origin, and the Bearer scheme is
// case-insensitive (RFC 7235).
func TestTokenSchemeIsCaseInsensitive(t *testing.T) {
	d := getDemo(t)
	ts := start(t, "", func(c *Config) { c.Token = "s3cret" })
	for i, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		body, ct := form(t, map[string]string{"name": fmt.Sprintf("Tokenia %d", i)}, readFile(t, d.Images[2][0]))
		if r := post(t, ts.url+"/v1/species", ct, body, map[string]string{"Authorization": scheme + " s3cret"}, nil); r.StatusCode != 201 {
			t.Errorf("Authorization: %s s3cret: status %d, want 201", scheme, r.StatusCode)
		}
	}
	body, ct := form(t, map[string]string{"name": "Tokenia x"}, readFile(t, d.Images[2][0]))
	for _, hdr := range []map[string]string{{"Authorization": "Basic s3cret"}, {"Authorization": "Bearers3cret"},
		{"Authorization": "Bearer s3cret", "Sec-Fetch-Site": "cross-site"}} {
		if r := post(t, ts.url+"/v1/species", ct, body, hdr, nil); r.StatusCode != 401 && r.StatusCode != 403 {
			t.Errorf("enrol with %v: status %d, want 401 or 403", hdr, r.StatusCode)
		}
	}
}

// exposedListener is a loopback listener that reports a wildcard address, as one listening on
// every interface would (tests listen on 127.0.0.1 only).
type exposedListener struct{ net.Listener }

func (exposedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero, Port: 8080} }

// Issue 14, point 5: Serve refuses an address other machines reach while anyone could enrol.
func TestServeRefusesOpenEnrolmentOffLoopback(t *testing.T) {
	for _, c := range []struct {
		name   string
		mod    func(*Config)
		refuse bool
	}{
		{"no token", nil, true},
		{"token", func(c *Config) { c.Token = "t" }, false},
		{"--open-enrolment", func(c *Config) { c.OpenEnrolment = true }, false},
	} {
		ts := start(t, "", c.mod)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- ts.Serve(ctx, exposedListener{ln}) }()
		if !c.refuse {
			cancel()
		}
		err = <-errc
		cancel()
		ln.Close()
		if refused := err != nil && strings.Contains(err.Error(), "--token-file"); refused != c.refuse {
			t.Errorf("%s: Serve on 0.0.0.0 returned %v; refused %v, want %v", c.name, err, refused, c.refuse)
		}
	}
	if !isLoopback(&net.TCPAddr{IP: net.IPv6loopback}) || isLoopback(&net.TCPAddr{IP: net.IPv6zero}) || isLoopback(&net.TCPAddr{IP: net.ParseIP("192.168.1.5")}) {
		t.Error("isLoopback: wrong for ::1, :: or 192.168.1.5")
	}
}

// failingStore fails every enrolment as a full or read-only disk would, through the wrapping that
// ProtoStore and package atomicfile put around the OS error.
type failingStore struct {
	Store
	errno syscall.Errno
}

const secretDir = "/srv/protoherb-private/models"

func (f failingStore) Enrol(c proto.Class, emb []float32, key string) (proto.Enrolment, error) {
	pe := &fs.PathError{Op: "open", Path: secretDir + "/.protos.safetensors.tmp-123", Err: f.errno}
	return proto.Enrolment{}, fmt.Errorf("enrol %s: saving %s/protos.safetensors: create temporary file for it: %w", c.Name, secretDir, pe)
}

func (f failingStore) Path() string { return secretDir + "/protos.safetensors" }

// Issue 14, point 8: a disk or permission failure is the server's (5xx), and the answer names no
// server path.
func TestStorageFailureIs5xxWithoutPaths(t *testing.T) {
	d := getDemo(t)
	img := readFile(t, d.Images[3][0])
	for _, c := range []struct {
		errno syscall.Errno
		want  int
	}{{syscall.ENOSPC, 507}, {syscall.EACCES, 500}, {syscall.EROFS, 500}} {
		ts := start(t, "", func(cfg *Config) { cfg.Store = failingStore{Store: cfg.Store, errno: c.errno} })
		body, ct := form(t, map[string]string{"name": "Diskia plena"}, img)
		r := post(t, ts.url+"/v1/species", ct, body, nil, nil)
		msg := r.Header.Get("X-Test-Body")
		if r.StatusCode != c.want || strings.Contains(msg, "/srv") || strings.Contains(msg, "protos") {
			t.Errorf("%v: status %d %q; want %d naming no server path", c.errno, r.StatusCode, msg, c.want)
		}
	}
	// A real failure: the prototype file's folder is gone.
	ts := start(t, "", nil)
	dir := filepath.Dir(ts.protos)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	body, ct := form(t, map[string]string{"name": "Diskia nulla"}, img)
	r := post(t, ts.url+"/v1/species", ct, body, nil, nil)
	if msg := r.Header.Get("X-Test-Body"); r.StatusCode != 500 || strings.Contains(msg, dir) || strings.Contains(msg, "safetensors") {
		t.Errorf("store folder removed: status %d %q; want 500 naming no server path", r.StatusCode, msg)
	}
	if n := speciesTotal(t, ts.url); n != len(d.Species) {
		t.Errorf("%d species after the failed enrolment, want %d", n, len(d.Species))
	}
	// Mistakes of the request stay 422, with the path reduced to the file's name.
	ts2 := start(t, "", nil)
	body, ct = form(t, map[string]string{"name": d.Species[0].Name, "genus": "Betula"}, img)
	if r := post(t, ts2.url+"/v1/species", ct, body, nil, nil); r.StatusCode != 422 || strings.Contains(r.Header.Get("X-Test-Body"), filepath.Dir(ts2.protos)) {
		t.Errorf("conflicting genus: status %d %q, want 422", r.StatusCode, r.Header.Get("X-Test-Body"))
	}
}

// Issue 14, point 8: temporary files that a crash left next to the prototype file are removed at
// start-up; a fresh one (a live writer's) and other files are kept.
func TestStartRemovesTempFilesLeftByACrash(t *testing.T) {
	d := getDemo(t)
	dir := t.TempDir()
	protos := filepath.Join(dir, "prototypes.safetensors")
	if err := os.WriteFile(protos, readFile(t, d.Prototypes), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	files := map[string]bool{ // name: removed at start-up
		".prototypes.safetensors.tmp-1234": true,
		".prototypes.safetensors.tmp-99":   true,
		".prototypes.safetensors.tmp-live": false,
		".other.safetensors.tmp-1":         false,
		"prototypes.safetensors.tmp-7":     false,
	}
	for name := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		if name != ".prototypes.safetensors.tmp-live" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	start(t, protos, nil)
	for name, removed := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if gone := errors.Is(err, fs.ErrNotExist); gone != removed {
			t.Errorf("%s: removed %v, want %v", name, gone, removed)
		}
	}
	if _, err := os.Stat(protos); err != nil {
		t.Fatalf("the prototype file itself: %v", err)
	}
}
