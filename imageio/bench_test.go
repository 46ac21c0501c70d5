package imageio

import (
	"context"
	"os"
	"testing"
)

// BenchmarkCrop224: decode a 1024x1536 q90 JPEG + resize(256)/centre crop(224), one goroutine.
//
//	go test ./imageio -run '^$' -bench Crop224
func BenchmarkCrop224(b *testing.B) {
	paths, err := GenerateJPEGs(context.Background(), b.TempDir(), 4, 1024, 1536, 90, 1)
	if err != nil {
		b.Fatal(err)
	}
	var blobs [][]byte
	for _, p := range paths {
		bl, _ := os.ReadFile(p)
		blobs = append(blobs, bl)
	}
	p, err := NewProcessor()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	t := Transform{Size: 224, Resize: 256}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, _, err := p.Crop(blobs[i%len(blobs)], &t, nil, 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
