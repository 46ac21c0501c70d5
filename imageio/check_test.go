package imageio

import (
	"context"
	"errors"
	"image"
	"image/color"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestCheckFiles: the header check (and the full decode) find every kind of bad file, with its
// reason, and pass good files, including a JPEG with bytes appended after its end marker.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	jpg := encJPEG(t, SpecimenImage(300, 200, 1), 90)
	pngb := encPNG(t, SpecimenImage(120, 90, 2))
	trailing := append(append([]byte(nil), jpg...), make([]byte, 4096)...)
	files := map[string][]byte{
		"good.jpg":      jpg,
		"good.png":      pngb,
		"trailing.jpg":  trailing,
		"truncated.jpg": jpg[:len(jpg)/2],
		"truncated.png": pngb[:len(pngb)/2],
		"empty.jpg":     nil,
		"anim.gif":      []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00"),
		"huge.jpg":      encJPEG(t, image.NewGray(image.Rect(0, 0, 3000, 2000)), 50),
		"zero.png":      encPNG(t, flat(1, 1, color.RGBA{1, 2, 3, 255}))[:8],
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "folder.jpg"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := map[string]error{
		"truncated.jpg": ErrCorrupt, "truncated.png": ErrCorrupt, "empty.jpg": ErrCorrupt, "anim.gif": ErrUnsupported,
		"huge.jpg": ErrTooLarge, "zero.png": ErrCorrupt, "missing.jpg": fs.ErrNotExist, "folder.jpg": nil,
	}
	var paths []string
	for _, name := range []string{"good.jpg", "truncated.jpg", "good.png", "truncated.png", "trailing.jpg", "empty.jpg",
		"anim.gif", "huge.jpg", "zero.png", "missing.jpg", "folder.jpg"} {
		paths = append(paths, filepath.Join(dir, name))
	}
	for _, decode := range []bool{false, true} {
		bad, err := CheckFiles(context.Background(), paths, CheckOptions{Decode: decode, Workers: 3, MaxPixels: 1_000_000})
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		last := -1
		for _, b := range bad {
			name := filepath.Base(b.Path)
			found[name] = true
			w, ok := want[name]
			switch {
			case !ok:
				t.Errorf("decode %v: %s is good, reported %v", decode, name, b.Err)
			case w != nil && !errors.Is(b.Err, w):
				t.Errorf("decode %v: %s: %v, want %v", decode, name, b.Err, w)
			}
			if b.Index <= last || paths[b.Index] != b.Path {
				t.Errorf("decode %v: bad files out of order or misnumbered: %+v", decode, b)
			}
			last = b.Index
		}
		for name := range want {
			if !found[name] {
				t.Errorf("decode %v: %s not reported", decode, name)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CheckFiles(ctx, paths, CheckOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled check: %v", err)
	}
}
