package serve

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const chromiumPath = "/usr/bin/chromium"

// TestPageInChromium loads the web page in headless Chromium with ?image= pointing at a fixture
// specimen: the page's JS fetches it, posts it to /v1/identify and renders the results, which
// are read back from the DOM Chromium dumps.
func TestPageInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("headless Chromium not installed (%s): `make deps` installs it (apt-get install chromium)", chromiumPath)
	}
	d := getDemo(t)
	ts := start(t, "", nil)
	fixture := readFile(t, d.Images[2][0])
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fixture.jpg", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(fixture)
	})
	mux.Handle("/", ts.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=20000",
		"--dump-dom", base+"/?image=/fixture.jpg")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := string(out)
	want := d.Species[2]
	for _, s := range []string{
		`class="match best" data-species-id="2"`, // the top result is the fixture's species
		">" + want.Name + "<",
		"Most likely " + want.Name,
		"Nearest reference specimens of " + want.Name,
		`src="/v1/specimens/`,
		`id="preview" alt="" src="blob:`, // the uploaded image is shown
	} {
		if !strings.Contains(dom, s) {
			t.Errorf("the page does not show %q; DOM:\n%s", s, excerpt(dom, `id="identify-card"`, 4000))
		}
	}
	if strings.Count(dom, `class="match`) != 5 {
		t.Errorf("want 5 ranked species in the page, got %d", strings.Count(dom, `class="match`))
	}
	if n := metric(t, ts.url, `protoherb_http_requests_total{code="200",route="identify"}`); n != 1 {
		t.Errorf("the page made %v identify requests, want 1", n)
	}
}

func excerpt(s, from string, n int) string {
	if i := strings.Index(s, from); i >= 0 {
		s = s[i:]
	}
	return s[:min(n, len(s))]
}
