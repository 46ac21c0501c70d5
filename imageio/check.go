package imageio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"protoherb/progress"
)

// CheckOptions configure CheckFiles.
type CheckOptions struct {
	// Decode decodes every image (JPEG at the smallest DCT scale: every byte of the entropy-coded
	// data is still read) instead of reading only its header and its end.
	Decode bool
	// Workers check files in parallel (0 = GOMAXPROCS).
	Workers int
	// MaxPixels refuses larger images (0 = DefaultMaxPixels, as the loader).
	MaxPixels int
	Bar       *progress.Bar
}

// headerPrefix is how much of a file the header check reads first (a JPEG's EXIF and ICC segments
// come before its frame header; a larger header is read whole).
const headerPrefix = 256 << 10

// CheckFiles checks that every file is an image the loader can read and returns the bad ones in the
// order of paths, each with its reason: missing or unreadable, empty, not a JPEG or PNG, a header
// that does not parse, zero or too many pixels (the loader's limit), or truncated. Without Decode a
// file is truncated when its end lacks the format's end marker (a JPEG's EOI, a PNG's IEND chunk);
// such a file is then decoded to be sure, as some writers append bytes after the marker.
func CheckFiles(ctx context.Context, paths []string, opt CheckOptions) ([]BadImage, error) {
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	errs := make([]error, len(paths))
	jobs := make(chan int)
	var wg sync.WaitGroup
	var setupErr error
	var once sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := NewDecoder()
			if err != nil {
				once.Do(func() { setupErr = err })
				for range jobs {
				}
				return
			}
			defer d.Close()
			var buf []byte
			for i := range jobs {
				errs[i] = checkFile(d, paths[i], opt, &buf)
				opt.Bar.Add(1)
			}
		}()
	}
feed:
	for i := range paths {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if setupErr != nil {
		return nil, setupErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opt.Bar.Finish()
	var bad []BadImage
	for i, err := range errs {
		if err != nil {
			bad = append(bad, BadImage{Index: i, Path: paths[i], Err: err})
		}
	}
	return bad, nil
}

// checkFile checks one file; buf is the worker's read buffer.
func checkFile(d *Decoder, path string, opt CheckOptions, buf *[]byte) error {
	if opt.Decode {
		return decodeCheck(d, path, opt.MaxPixels, buf)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return errors.New("is a directory")
	}
	size := st.Size()
	if size == 0 {
		return fmt.Errorf("%w: empty file", ErrCorrupt)
	}
	*buf = grow(*buf, int(min(size, headerPrefix)))
	head := *buf
	if _, err := io.ReadFull(f, head); err != nil {
		return err
	}
	format, w, h, err := d.Config(head)
	if err != nil && format != FormatUnknown && size > int64(len(head)) {
		return decodeCheck(d, path, opt.MaxPixels, buf) // a header longer than the prefix
	}
	if err != nil {
		return err
	}
	if err := checkSize(w, h, opt.MaxPixels); err != nil {
		return err
	}
	tail := make([]byte, min(size, 1024))
	if _, err := f.ReadAt(tail, size-int64(len(tail))); err != nil {
		return err
	}
	if hasEndMarker(format, tail) {
		return nil
	}
	return decodeCheck(d, path, opt.MaxPixels, buf)
}

// hasEndMarker reports whether the last KiB of a file holds its format's end marker.
func hasEndMarker(f Format, tail []byte) bool {
	if f == FormatJPEG {
		return hasEOI(tail)
	}
	return bytes.Contains(tail, []byte("IEND"))
}

// decodeCheck reads and decodes a whole file (JPEG at the smallest DCT scale).
func decodeCheck(d *Decoder, path string, maxPixels int, buf *[]byte) error {
	b, err := readFile(path, *buf)
	if err != nil {
		return err
	}
	*buf = b
	_, err = d.Decode(b, DecodeOptions{MaxPixels: maxPixels, MinW: 1, MinH: 1}, nil)
	return err
}
