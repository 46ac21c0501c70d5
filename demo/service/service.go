// Package service writes a tiny self-contained identification service to disk: a random-weight
// model checkpoint, generated specimen images, a prototype file built from them and the specimen
// index (an embeddings file) — what `protoherb serve --demo`, `protoherb bench serve` and the
// service's tests run on, without a trained model or any download.
package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"protoherb/checkpoint"
	"protoherb/imageio"
	"protoherb/infer"
	"protoherb/nn"
	"protoherb/proto"
	"protoherb/torch"
)

// Options size a demo service.
type Options struct {
	Species   int    // classes (8)
	PerClass  int    // specimens per class (3)
	ImageSize int    // model input side (32)
	Backbone  string // "" = conv4
	Seed      uint64 // weights and images
	// Reseed seeds the generator that initialises the model's random weights; Make calls it with
	// Seed first (commands and tests pass torch.ManualSeed). nil leaves the generator as it is.
	Reseed func(seed uint64) error
	// ImageW, ImageH: the generated specimen JPEGs (160 × 240).
	ImageW, ImageH int
}

// Demo is a small self-contained service on disk: a checkpoint (Conv-4 unless DemoOptions say, random weights), a
// prototype store built from generated specimen images, an index of those specimens and the
// images. Tests and `protoherb bench serve` use it.
type Demo struct {
	Model      string // checkpoint folder
	Prototypes string
	Index      string
	ImagesRoot string
	// Images[c] are the paths of class c's specimens (class id c).
	Images  [][]string
	Species []proto.Species
}

var demoTaxa = []struct{ family, genus string }{
	{"Rosaceae", "Rosa"}, {"Asteraceae", "Achillea"}, {"Fabaceae", "Trifolium"}, {"Lamiaceae", "Salvia"},
	{"Ranunculaceae", "Ranunculus"}, {"Brassicaceae", "Cardamine"}, {"Apiaceae", "Angelica"}, {"Poaceae", "Festuca"},
	{"Orchidaceae", "Orchis"}, {"Ericaceae", "Vaccinium"}, {"Fagaceae", "Quercus"}, {"Betulaceae", "Betula"},
}

var demoEpithets = []string{"alba", "montana", "vulgaris", "pratensis", "sylvestris", "officinalis", "minor",
	"major", "palustris", "repens", "lanata", "borealis", "gracilis", "hirsuta", "rubra", "lutea"}

// Name returns the taxonomy of demo class i.
func Name(i int) proto.Class {
	t := demoTaxa[i%len(demoTaxa)]
	ep := demoEpithets[(i/len(demoTaxa)+i*7)%len(demoEpithets)]
	name := t.genus + " " + ep
	if i >= len(demoTaxa)*len(demoEpithets) {
		name = fmt.Sprintf("%s %d", name, i)
	}
	return proto.Class{ID: int64(i), Name: name, Genus: t.genus, Family: t.family}
}

// Image returns specimen j of demo class c as JPEG bytes: the class's sheet with a per-specimen
// brightness shift and noise, so that specimens of a class look alike.
func Image(c, j, w, h int, seed uint64) []byte {
	base := imageio.SpecimenImage(w, h, seed*1_000_003+uint64(c))
	r := rand.New(rand.NewPCG(seed, uint64(c)<<20|uint64(j)))
	shift := 0
	if j > 0 {
		shift = r.IntN(41) - 20
	}
	img := image.NewRGBA(base.Rect)
	for i := range base.Pix {
		if i%4 == 3 {
			img.Pix[i] = 255
			continue
		}
		v := int(base.Pix[i]) + shift
		if j > 0 {
			v += r.IntN(49) - 24
		}
		img.Pix[i] = uint8(min(max(v, 0), 255))
	}
	var buf bytes.Buffer
	_ = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	return buf.Bytes()
}

// Make writes a demo service into dir.
func Make(ctx context.Context, dir string, o Options) (*Demo, error) {
	o.defaults()
	d := &Demo{ImagesRoot: filepath.Join(dir, "images"), Prototypes: filepath.Join(dir, "prototypes.safetensors"),
		Index: filepath.Join(dir, "train-embeddings.safetensors")}
	if err := os.MkdirAll(d.ImagesRoot, 0o755); err != nil {
		return nil, err
	}
	// A rebuild replaces the demo's store rather than adding to it.
	if err := os.Remove(d.Prototypes); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var err error
	if d.Model, err = randomModel(dir, o); err != nil {
		return nil, err
	}
	emb, err := infer.LoadModel(d.Model, infer.ModelSpec{Device: torch.CPU, ChannelsLast: true, Chunk: -1})
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	store, err := proto.Create(d.Prototypes, emb.Dim(), "demo", proto.Options{}, proto.Build{}, proto.OpenOptions{})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	index := &proto.Embeddings{Dim: emb.Dim(), Model: "demo", Split: "train", Root: d.ImagesRoot}
	tf := emb.Transform()
	for c := range o.Species {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sp := Name(c)
		var xs []float32
		var names []string
		for j := range o.PerClass {
			b := Image(c, j, o.ImageW, o.ImageH, o.Seed)
			rel := fmt.Sprintf("c%03d/s%02d.jpg", c, j)
			p := filepath.Join(d.ImagesRoot, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return nil, err
			}
			x, err := imageio.Preprocess(b, tf, 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			xs = append(xs, x...)
			names = append(names, p)
			index.IDs = append(index.IDs, int64(len(index.IDs)))
			index.Paths = append(index.Paths, rel)
			index.Labels = append(index.Labels, int64(c))
		}
		e, err := emb.Embed(xs, o.PerClass)
		if err != nil {
			return nil, err
		}
		got, err := store.Enrol(sp, e, "")
		if err != nil {
			return nil, err
		}
		index.Vectors = append(index.Vectors, e...)
		d.Images = append(d.Images, names)
		d.Species = append(d.Species, got.Species)
	}
	if err := index.Save(d.Index); err != nil {
		return nil, err
	}
	return d, nil
}

func (o *Options) defaults() {
	if o.Species <= 0 {
		o.Species = 8
	}
	if o.PerClass <= 0 {
		o.PerClass = 3
	}
	if o.ImageSize <= 0 {
		o.ImageSize = 32
	}
	if o.ImageW <= 0 || o.ImageH <= 0 {
		o.ImageW, o.ImageH = 160, 240
	}
}

// randomModel saves a model of random weights (seeded) as a checkpoint under dir/run.
func randomModel(dir string, o Options) (string, error) {
	if o.Reseed != nil {
		if err := o.Reseed(o.Seed); err != nil {
			return "", fmt.Errorf("demo model: seed %d: %w", o.Seed, err)
		}
	}
	backbone := o.Backbone
	if backbone == "" {
		backbone = "conv4"
	}
	m, err := nn.New(nn.Config{Backbone: backbone, InChannels: 3, ImageSize: o.ImageSize})
	if err != nil {
		return "", err
	}
	defer m.Close()
	runCfg, _ := json.Marshal(map[string]any{"backbone": backbone, "image_size": o.ImageSize, "in_channels": 3})
	return checkpoint.Save(filepath.Join(dir, "run"), &checkpoint.Checkpoint{Weights: m.State(), Config: runCfg}, 1)
}

// Ensure returns the demo in dir, building it (24 species, 4 specimens each, 84-pixel
// input, 320 × 480 sheets, seed 1 given to reseed) when dir does not hold one yet.
func Ensure(ctx context.Context, dir string, reseed func(seed uint64) error) (*Demo, error) {
	o := Options{Species: 24, PerClass: 4, ImageSize: 84, ImageW: 320, ImageH: 480, Seed: 1, Reseed: reseed}
	d := &Demo{ImagesRoot: filepath.Join(dir, "images"), Prototypes: filepath.Join(dir, "prototypes.safetensors"),
		Index: filepath.Join(dir, "train-embeddings.safetensors"), Model: filepath.Join(dir, "run", checkpoint.Name(0))}
	if _, err := os.Stat(d.Index); err == nil {
		return d, nil
	}
	return Make(ctx, dir, o)
}
