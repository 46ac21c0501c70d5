package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"protoherb/checkpoint"
	"protoherb/demo/service"
	"protoherb/infer"
	"protoherb/nn"
	"protoherb/proto"
	"protoherb/serve"
	"protoherb/torch"
)

// run executes the CLI with args and returns its standard output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--log-level", "error"))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// fixture writes an image folder (train and test, one solid colour per species, the test images
// equal to a training image) and a random Conv-4 model with its config in the metadata.
func fixture(t *testing.T) (data, model string) {
	t.Helper()
	dir := t.TempDir()
	colours := map[string]color.RGBA{"Acer": {200, 30, 30, 255}, "Betula": {30, 200, 30, 255}, "Carex": {30, 30, 200, 255}}
	for split, n := range map[string]int{"train": 3, "test": 2} {
		for name, c := range colours {
			d := filepath.Join(dir, split, name)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				img := image.NewRGBA(image.Rect(0, 0, 32, 32))
				for p := range img.Pix {
					img.Pix[p] = []uint8{c.R, c.G, c.B, 255}[p%4]
				}
				var buf bytes.Buffer
				if err := png.Encode(&buf, img); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, string(rune('a'+i))+".png"), buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := torch.ManualSeed(1); err != nil {
		t.Fatal(err)
	}
	m, err := nn.New(nn.Config{Backbone: "conv4", InChannels: 3, ImageSize: 28})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	model = filepath.Join(dir, "model.safetensors")
	if err := nn.SaveSafetensors(model, m.State(), map[string]string{"config": `{"backbone":"conv4","image_size":28,"in_channels":3}`}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir), model
}

func TestEmbedPrototypesPredict(t *testing.T) {
	data, model := fixture(t)
	dir := t.TempDir()
	emb, protos, sub, topk := filepath.Join(dir, "test.safetensors"), filepath.Join(dir, "p.safetensors"),
		filepath.Join(dir, "sub.csv"), filepath.Join(dir, "topk.csv")
	if out, err := run(t, "embed", "--model", model, "--data", data, "--split", "test", "--out", emb, "--quiet"); err != nil {
		t.Fatalf("embed: %v\n%s", err, out)
	}
	if out, err := run(t, "prototypes", "--model", model, "--data", data, "--out", protos, "--quiet", "--shrink", "genus=1"); err != nil {
		t.Fatalf("prototypes: %v\n%s", err, out)
	}
	if out, err := run(t, "predict", "--prototypes", protos, "--embeddings", emb, "--out", sub, "--topk", "2", "--topk-out", topk); err != nil {
		t.Fatalf("predict: %v\n%s", err, out)
	}
	// Test images equal training images: every prediction is right. ImageFolder numbers classes in
	// folder order (Acer 0, Betula 1, Carex 2) and test images in the same order, two per class.
	b, _ := os.ReadFile(sub)
	want := "Id,Predicted\n0,0\n1,0\n2,1\n3,1\n4,2\n5,2\n"
	if string(b) != want {
		t.Errorf("submission:\n%s\nwant:\n%s", b, want)
	}
	b, _ = os.ReadFile(topk)
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 1+6*2 || lines[0] != "Id,Rank,Predicted,Distance" || !strings.HasPrefix(lines[1], "0,1,0,") {
		t.Errorf("top-k CSV:\n%s", b)
	}
	st, err := proto.Load(protos)
	if err != nil {
		t.Fatal(err)
	}
	if st.Total() != 9 || st.Len() != 3 || st.DefaultBuild().ShrinkGenus != 1 {
		t.Errorf("prototypes: %d images, %d classes, build %+v", st.Total(), st.Len(), st.DefaultBuild())
	}

	// Shards merge to the same sums; prototypes from embeddings files equal the streamed ones.
	var shards []string
	for i, s := range []string{"0/2", "1/2"} {
		p := filepath.Join(dir, "train"+string(rune('0'+i))+".safetensors")
		if out, err := run(t, "embed", "--model", model, "--data", data, "--split", "train", "--shard", s, "--out", p, "--quiet"); err != nil {
			t.Fatalf("embed shard: %v\n%s", err, out)
		}
		// serve --index reads what embed wrote: each row's image, relative to the dataset's folder.
		x, err := serve.OpenIndex(p, "")
		if err != nil {
			t.Fatalf("serve --index %s: %v", p, err)
		}
		if _, err := x.Thumbnail(0); err != nil {
			t.Errorf("index %s: thumbnail of row 0: %v", p, err)
		}
		ps := filepath.Join(dir, "p"+string(rune('0'+i))+".safetensors")
		if out, err := run(t, "prototypes", "--from", p, "--out", ps); err != nil {
			t.Fatalf("prototypes --from: %v\n%s", err, out)
		}
		shards = append(shards, ps)
	}
	merged := filepath.Join(dir, "merged.safetensors")
	if out, err := run(t, "prototypes", "merge", shards[0], shards[1], "--out", merged); err != nil {
		t.Fatalf("merge: %v\n%s", err, out)
	}
	mst, err := proto.Load(merged)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Classes() {
		a, b := st.Mean(c.ID), mst.Mean(c.ID)
		for j := range a {
			if d := a[j] - b[j]; d > 1e-6 || d < -1e-6 {
				t.Fatalf("class %d: merged mean differs from the streamed one at %d: %v vs %v", c.ID, j, b[j], a[j])
			}
		}
	}

	// Adding a species without retraining.
	img := filepath.Join(data, "test", "Carex", "a.png")
	if out, err := run(t, "prototypes", "add", "--prototypes", protos, "--model", model, "--class", "Carex nova", "--genus", "Carex", img); err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	st2, _ := proto.Load(protos)
	if c, ok := st2.Class(3); !ok || c.Name != "Carex nova" || st2.Count(3) != 1 {
		t.Errorf("added class: %+v %v count %d", c, ok, st2.Count(3))
	}
	// The name matches as the server matches it (case and spacing aside): the images join class 3.
	if out, err := run(t, "prototypes", "add", "--prototypes", protos, "--model", model, "--class", " carex  NOVA", img); err != nil {
		t.Fatalf("add again: %v\n%s", err, out)
	}
	st3, _ := proto.Load(protos)
	if c, _ := st3.Class(3); st3.Len() != 4 || st3.Count(3) != 2 || c.Name != "Carex nova" || c.Genus != "Carex" {
		t.Errorf("adding to an existing species by another spelling: %d classes, class 3 %+v with %d images", st3.Len(), c, st3.Count(3))
	}
	// A conflicting taxonomy is refused, and the file is left as it was.
	before, _ := os.ReadFile(protos)
	if _, err := run(t, "prototypes", "add", "--prototypes", protos, "--model", model, "--class", "Carex nova", "--genus", "Betula", img); err == nil || !strings.Contains(err.Error(), "genus") {
		t.Errorf("conflicting genus: error %v", err)
	}
	if after, _ := os.ReadFile(protos); !bytes.Equal(before, after) {
		t.Errorf("a refused add changed %s", protos)
	}
}

func TestPredictBadInput(t *testing.T) {
	dir := t.TempDir()
	// 4-d prototypes, 3-d embeddings: another model.
	st, _ := proto.New(4, "m@1", []proto.Class{{ID: 1, Name: "a"}, {ID: 2, Name: "b"}}, proto.Options{})
	if err := st.Accumulate([]float32{1, 0, 0, 0}, []int64{1}, nil); err != nil {
		t.Fatal(err)
	}
	protos := filepath.Join(dir, "p.safetensors")
	if err := st.Save(protos); err != nil {
		t.Fatal(err)
	}
	emb := filepath.Join(dir, "e.safetensors")
	e := &proto.Embeddings{Dim: 3, Model: "m@2", IDs: []int64{7}, Labels: []int64{-1}, Vectors: []float32{1, 2, 3}}
	if err := e.Save(emb); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub.csv")
	if _, err := run(t, "predict", "--prototypes", protos, "--embeddings", emb, "--out", sub); err == nil || !strings.Contains(err.Error(), "different models") {
		t.Errorf("dimension mismatch: error %v", err)
	}
	// Same dimension, other model fingerprint.
	e.Dim, e.Vectors = 4, []float32{1, 2, 3, 4}
	e.Save(emb)
	if _, err := run(t, "predict", "--prototypes", protos, "--embeddings", emb, "--out", sub); err == nil || !strings.Contains(err.Error(), "m@2") {
		t.Errorf("model mismatch: error %v", err)
	}
	// NaN row.
	e.Model, e.Vectors = "m@1", []float32{1, float32(nan()), 3, 4}
	e.Save(emb)
	if _, err := run(t, "predict", "--prototypes", protos, "--embeddings", emb, "--out", sub); err == nil || !strings.Contains(err.Error(), "image 7") {
		t.Errorf("NaN row: error %v", err)
	}
	if _, err := os.Stat(sub); !os.IsNotExist(err) {
		t.Errorf("a failed predict left %s behind", sub)
	}
	// A class without images is excluded: predictions name only class 1; a failed image gets it too.
	e.IDs, e.Labels, e.Vectors, e.Failed = []int64{7, 8}, []int64{-1, -1}, []float32{0, 0, 0, 9, 0, 0, 0, 0}, []int64{8}
	e.Save(emb)
	if out, err := run(t, "predict", "--prototypes", protos, "--embeddings", emb, "--out", sub); err != nil {
		t.Fatalf("predict: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(sub); string(b) != "Id,Predicted\n7,1\n8,1\n" {
		t.Errorf("submission %q", b)
	}
	if b, _ := os.ReadFile(sub + ".failed.csv"); string(b) != "Id\n8\n" {
		t.Errorf("failed list %q", b)
	}
}

func nan() float64 { var z float64; return z / z }

// embed --model x.pt: a TorchScript module embeds without a training run (its weights inside).
func TestEmbedTorchScriptModule(t *testing.T) {
	data, _ := fixture(t)
	module, err := filepath.Abs("../../nn/testdata/tiny.pt")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "e.safetensors")
	if o, err := run(t, "embed", "--model", module, "--image-size", "8", "--channels", "1", "--data", data, "--split", "test", "--out", out, "--quiet"); err != nil {
		t.Fatalf("embed: %v\n%s", err, o)
	}
	e, err := proto.LoadEmbeddings(out)
	if err != nil {
		t.Fatal(err)
	}
	if e.Len() != 6 || e.Dim != 16 || len(e.Failed) != 0 || !strings.HasPrefix(e.Model, "tiny.pt@") {
		t.Errorf("embeddings: %d rows of %d, %d failed, model %q", e.Len(), e.Dim, len(e.Failed), e.Model)
	}
}

// A checkpoint's model.safetensors copied alone says its architecture: no --backbone or --image-size.
func TestBareCheckpointWeightsDescribeTheModel(t *testing.T) {
	d, err := service.Make(context.Background(), t.TempDir(), service.Options{Species: 2, PerClass: 1, Seed: 3, Reseed: torch.ManualSeed})
	if err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(t.TempDir(), "weights.safetensors")
	b, err := os.ReadFile(filepath.Join(d.Model, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bare, b, 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := infer.LoadModel(bare, infer.ModelSpec{})
	if err != nil {
		t.Fatalf("a bare model.safetensors: %v", err)
	}
	defer e.Close()
	if tf := e.Transform(); tf.Size != 32 || tf.Channels != 3 {
		t.Errorf("transform %+v, want the checkpoint's 32 px, 3 channels", tf)
	}
}

// A weights file whose config records the input normalisation is embedded with it.
func TestModelFileNormalisation(t *testing.T) {
	m, err := nn.New(nn.Config{Backbone: "conv4", InChannels: 3, ImageSize: 28})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	path := filepath.Join(t.TempDir(), "model.safetensors")
	cfg := `{"backbone":"conv4","image_size":28,"in_channels":3,"mean":[0.5,0.5,0.5],"std":[0.25,0.25,0.25]}`
	if err := nn.SaveSafetensors(path, m.State(), map[string]string{"config": cfg}); err != nil {
		t.Fatal(err)
	}
	e, err := infer.LoadModel(path, infer.ModelSpec{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if tf := e.Transform(); len(tf.Mean) != 3 || tf.Mean[0] != 0.5 || len(tf.Std) != 3 || tf.Std[2] != 0.25 {
		t.Errorf("transform mean %v std %v, want the file's 0.5 and 0.25", tf.Mean, tf.Std)
	}
}
