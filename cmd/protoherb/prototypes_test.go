package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
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

// TestMergeMemoryDoesNotGrowWithShards merges 2 and then 8 shard files of ~8 MB of sums in a child
// process each and compares their peak RSS: the merge holds the running sums and one shard, so 6
// more shards may not cost 6 more shards' memory (loading every file first did: 5.1 GB for the four
// 415 MB shards of the Herbarium 2020 shape).
func TestMergeMemoryDoesNotGrowWithShards(t *testing.T) {
	const dim, classes = 256, 4000
	dir := t.TempDir()
	cls := make([]proto.Class, classes)
	for i := range cls {
		cls[i] = proto.Class{ID: int64(i), Name: fmt.Sprintf("Species %d", i)}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var paths []string
	for sh := range 8 {
		s, err := proto.New(dim, "fp", cls, proto.Options{})
		if err != nil {
			t.Fatal(err)
		}
		emb, labels := make([]float32, classes*dim), make([]int64, classes)
		for i := range emb {
			emb[i] = float32(rng.NormFloat64())
		}
		for i := range labels {
			labels[i] = int64(i)
		}
		if err := s.Accumulate(emb, labels, nil); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, filepath.Join(dir, fmt.Sprintf("p.shard-%d-of-8.safetensors", sh)))
		if err := s.Save(paths[sh]); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	peak := func(files []string) int64 {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command(self, append(append([]string{"prototypes", "merge"}, files...), "--out", filepath.Join(dir, "all.safetensors"))...)
		c.Env = append(os.Environ(), "PROTOHERB_TEST_MAIN=1")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("merge: %v\n%s", err, out)
		}
		return c.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
	}
	two, eight := peak(paths[:2]), peak(paths)
	t.Logf("peak RSS: 2 shards %d MB, 8 shards %d MB; one shard file %d MB", two>>20, eight>>20, fi.Size()>>20)
	if grow := eight - two; grow > 3*fi.Size() {
		t.Errorf("merging 8 shards took %d MB more than 2 (a shard file is %d MB): memory grows with the shard count", grow>>20, fi.Size()>>20)
	}
	m, err := proto.Load(filepath.Join(dir, "all.safetensors"))
	if err != nil || m.Total() != 8*classes {
		t.Fatalf("merged file: %v, %v images", err, m.Total())
	}
}
