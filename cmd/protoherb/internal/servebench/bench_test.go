package servebench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"protoherb/demo/service"
	"protoherb/imageio"
	"protoherb/serve"
	"protoherb/torch"
)

// bench serve's abusive mixes: the stalled mix runs its 130 stalled uploads next to the normal
// load, which still gets every identification answered and loses no enrolment.
func TestBenchStalledMix(t *testing.T) {
	d, err := service.Make(context.Background(), t.TempDir(), service.Options{Species: 6, PerClass: 2, Seed: 7, Reseed: torch.ManualSeed})
	if err != nil {
		t.Fatal(err)
	}
	var imgs [][]byte
	for _, c := range d.Images {
		b, err := os.ReadFile(c[0])
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, b)
	}
	var out strings.Builder
	rep, err := Run(context.Background(), Options{Clients: []int{2}, Duration: 500 * time.Millisecond,
		Mixes: []string{MixNormal, MixStalled}, EnrolClients: 1, EnrolPause: 20 * time.Millisecond, Images: imgs, Out: &out,
		Files: serve.Files{Model: d.Model, Prototypes: d.Prototypes, Index: d.Index, ImagesRoot: d.ImagesRoot}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Levels) != 2 || rep.Lost != 0 {
		t.Fatalf("report %+v\n%s", rep, out.String())
	}
	for _, l := range rep.Levels {
		if l.Errors != 0 || l.Requests == 0 || l.EnrolErrors != 0 || l.MeanBatch < 1 { // batches from /metrics
			t.Errorf("%s mix: %+v\n%s", l.Mix, l, out.String())
		}
	}
	if st := rep.Levels[1]; st.Mix != MixStalled || st.Abusive < StalledClients {
		t.Errorf("stalled mix: %d stalled uploads sent, want at least %d\n%s", st.Abusive, StalledClients, out.String())
	}
	if _, err := Run(context.Background(), Options{Clients: []int{1}, Mixes: []string{"flood"}, Images: imgs,
		Files: serve.Files{Model: d.Model, Prototypes: d.Prototypes}}); err == nil || !strings.Contains(err.Error(), "flood") {
		t.Errorf("unknown mix: %v", err)
	}
}

// The bombs of bench serve's bombs mix are what they claim: the sizes their headers declare, and
// flatPNG a real image that decodes.
func TestBenchBombImages(t *testing.T) {
	dec, err := imageio.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	f, w, h, err := dec.Config(headerPNG(100000, 100000))
	if err != nil || f != imageio.FormatPNG || w != 100000 || h != 100000 {
		t.Errorf("headerPNG: %v %d×%d %v", f, w, h, err)
	}
	b, err := flatPNG(70, 50)
	if err != nil {
		t.Fatal(err)
	}
	m, err := imageio.DecodeBytes(b, 0)
	if err != nil || m.W != 70 || m.H != 50 || m.At(3, 4, 1) != 120 {
		t.Errorf("flatPNG: %v %+v", err, m)
	}
}
