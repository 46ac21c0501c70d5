package search

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkScan measures the scan alone (no matrix product) over a tile of random scores.
func BenchmarkScan(b *testing.B) {
	for _, shape := range [][2]int{{256, 2048}, {1024, 4096}} {
		qr, pr := shape[0], shape[1]
		b.Run(fmt.Sprintf("%dx%d", qr, pr), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 1))
			tile := make([]float32, qr*pr)
			for i := range tile {
				tile[i] = float32(rng.NormFloat64())
			}
			f := &Flat{dim: 1, ids: make([]int64, pr), sorted: true}
			k := 5
			s := &searcher{f: f, opt: Options{Threads: 1}.withDefaults(), k: k, nq: qr, dist: make([]float32, qr*k), idx: make([]int32, qr*k), cnt: make([]int32, qr), bias: make([]float32, pr)}
			b.SetBytes(int64(len(tile) * 4))
			b.ResetTimer()
			for range b.N {
				s.scanRows(tile, pr, 0, 0, 0, qr)
			}
		})
	}
}
