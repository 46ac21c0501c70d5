package proto

import (
	"math/rand/v2"
	"path/filepath"
	"strconv"
)

// GenerateScaleFixture writes the inputs of a prediction at a given scale into dir: a prototype
// store of classes+1 classes (the last without images, as Herbarium 2020 has one) whose sums come
// from 1–3 random embeddings each, and queries random test embeddings, all dim-dimensional and from
// one made-up model. It returns the two file paths. Benchmarks use it (`protoherb bench predict`).
func GenerateScaleFixture(dir string, classes, queries, dim int, seed uint64) (protos, embeddings string, err error) {
	rng := rand.New(rand.NewPCG(seed, 7))
	cs := make([]Class, classes+1)
	for i := range cs {
		cs[i] = Class{ID: int64(i), Name: "species " + strconv.Itoa(i), Genus: "g" + strconv.Itoa(i/8), Family: "f" + strconv.Itoa(i/200)}
	}
	const model = "bench@0"
	s, err := New(dim, model, cs, Options{})
	if err != nil {
		return "", "", err
	}
	vec := make([]float32, dim)
	for c := range classes {
		for range 1 + rng.IntN(3) {
			for j := range vec {
				vec[j] = float32(rng.NormFloat64())
			}
			if err := s.Accumulate(vec, []int64{int64(c)}, nil); err != nil {
				return "", "", err
			}
		}
	}
	protos = filepath.Join(dir, "protos.safetensors")
	if err := s.Save(protos); err != nil {
		return "", "", err
	}
	e := &Embeddings{Dim: dim, Model: model, Split: "test", IDs: make([]int64, queries), Labels: make([]int64, queries),
		Vectors: make([]float32, queries*dim)}
	for i := range e.IDs {
		e.IDs[i], e.Labels[i] = int64(i), -1
	}
	for i := range e.Vectors {
		e.Vectors[i] = float32(rng.NormFloat64())
	}
	embeddings = filepath.Join(dir, "test.safetensors")
	if err := e.Save(embeddings); err != nil {
		return "", "", err
	}
	return protos, embeddings, nil
}
