package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"protoherb/infer"
	"protoherb/proto"
	"protoherb/serve"
)

// `prototypes add` on the file a running server enrols into: 25 CLI adds and 25 HTTP enrolments
// interleaved (concurrently), then every species is in the file once with a unique id, and the
// server sees the CLI's species too.
func TestCLIAddAndServerEnrolInterleaved(t *testing.T) {
	data, model := fixture(t)
	protos := filepath.Join(t.TempDir(), "p.safetensors")
	if out, err := run(t, "prototypes", "--model", model, "--data", data, "--out", protos, "--quiet"); err != nil {
		t.Fatalf("prototypes: %v\n%s", err, out)
	}
	s, closeAll, err := serve.Open(serve.Files{Model: model, Prototypes: protos}, infer.ModelSpec{},
		serve.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	img := filepath.Join(data, "test", "Carex", "a.png")
	body, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	const n = 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	wg.Go(func() {
		for i := range n {
			if out, err := run(t, "prototypes", "add", "--prototypes", protos, "--model", model, "--class", fmt.Sprintf("Cli species %d", i), img); err != nil {
				errs <- fmt.Errorf("add %d: %v\n%s", i, err, out)
			}
		}
	})
	wg.Go(func() {
		for i := range n {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			_ = mw.WriteField("name", fmt.Sprintf("Http species %d", i))
			fw, _ := mw.CreateFormFile("image", "a.png")
			_, _ = fw.Write(body)
			_ = mw.Close()
			resp, err := http.Post(ts.URL+"/v1/species", mw.FormDataContentType(), &buf)
			if err != nil {
				errs <- err
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("enrol %d: status %d", i, resp.StatusCode)
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, err := proto.Load(protos)
	if err != nil {
		t.Fatal(err)
	}
	if st.Len() != 3+2*n {
		t.Fatalf("%d species in the file, want %d", st.Len(), 3+2*n)
	}
	ids := map[int64]string{}
	for _, c := range st.Classes() {
		if other, dup := ids[c.ID]; dup {
			t.Fatalf("id %d is both %q and %q", c.ID, other, c.Name)
		}
		ids[c.ID] = c.Name
		if st.Count(c.ID) < 1 {
			t.Errorf("species %q has no image", c.Name)
		}
	}
	// The server's next enrolment saw the CLI's species (it read the file again under the lock).
	resp, err := http.Get(ts.URL + "/v1/species")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct{ Total int }
	if err := jsonDecode(resp.Body, &list); err != nil || list.Total < 3+n+1 {
		t.Errorf("the server lists %d species (%v)", list.Total, err)
	}
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
