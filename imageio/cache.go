package imageio

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"syscall"

	"protoherb/atomicfile"
	"protoherb/progress"
)

// The cache file: the magic "PHCACHE1", the pixel blobs (8-bit HWC) one after another, the index
// (one record per image: offset u64, width u16, height u16, channels u8, status u8, path length u16,
// error length u16, path, error message), and a 64-byte footer: magic, version u32, size u32,
// crop u32, reserved u32, count u64, index offset u64, index length u64. Little-endian throughout.
// Images are stored with their shorter side resized to the cache size (or as the centred square of
// that side with crop); transforms then run on them as on a decoded file.

const (
	cacheMagic   = "PHCACHE1"
	cacheVersion = 1
	footerLen    = 64
)

// CacheOptions configure BuildCache.
type CacheOptions struct {
	// Size is the shorter side of the stored images.
	Size int
	// Crop stores only the centred Size x Size square.
	Crop bool
	// Workers decoding in parallel (0 = GOMAXPROCS).
	Workers   int
	MaxPixels int
	// OnBad: Skip records the image as bad in the cache (the loader then reports it); Fail stops.
	OnBad BadPolicy
	Bar   *progress.Bar
}

// CacheReport summarises a build.
type CacheReport struct {
	Images, Bad int
	Bytes       int64
	BadImages   []BadImage
}

type cacheEntry struct {
	off        uint64
	w, h, c    int
	bad        bool
	path, errS string
}

// BuildCache decodes every path once at the cache size and writes the packed file out (atomically).
func BuildCache(ctx context.Context, out string, paths []string, opt CacheOptions) (CacheReport, error) {
	if opt.Size <= 0 || opt.Size > math.MaxUint16 {
		return CacheReport{}, fmt.Errorf("cache: size must be in [1, 65535], got %d", opt.Size)
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = max(1, runtimeProcs())
	}
	f, err := atomicfile.Create(out)
	if err != nil {
		return CacheReport{}, err
	}
	defer f.Abort()
	if _, err := f.WriteString(cacheMagic); err != nil {
		return CacheReport{}, err
	}
	procs, err := newProcessors(workers)
	if err != nil {
		return CacheReport{}, err
	}
	defer closeProcessors(procs)
	w := &cacheWriter{f: f, off: uint64(len(cacheMagic)), entries: make([]cacheEntry, 0, len(paths))}
	if err := w.writeImages(ctx, procs, paths, opt); err != nil {
		return w.rep, err
	}
	indexOff := w.off
	if err := w.writeIndex(); err != nil {
		return w.rep, err
	}
	if _, err := f.Write(cacheFooter(opt, len(w.entries), indexOff, w.off-indexOff)); err != nil {
		return w.rep, err
	}
	if err := f.Commit(); err != nil {
		return w.rep, err
	}
	w.rep.Bytes = int64(w.off) + footerLen
	opt.Bar.Finish()
	return w.rep, nil
}

// cacheWriter is the state of one BuildCache: the file being written, the offset of the next byte
// (the footer excluded), the index entries so far and the report.
type cacheWriter struct {
	f       *atomicfile.File
	off     uint64
	entries []cacheEntry
	rep     CacheReport
}

// cacheResult is the decoded image of one path, or why it could not be decoded.
type cacheResult struct {
	m   *Image
	err error
}

// newProcessors opens n processors; on failure it closes those already open.
func newProcessors(n int) ([]*Processor, error) {
	procs := make([]*Processor, 0, n)
	for range n {
		p, err := NewProcessor()
		if err != nil {
			closeProcessors(procs)
			return nil, err
		}
		procs = append(procs, p)
	}
	return procs, nil
}

// closeProcessors closes procs, last opened first.
func closeProcessors(procs []*Processor) {
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Close()
	}
}

// writeImages decodes paths in chunks (one goroutine per processor) and appends each chunk's pixels
// to the file in path order, advancing the progress bar per chunk. It stops between chunks when ctx
// is cancelled.
func (w *cacheWriter) writeImages(ctx context.Context, procs []*Processor, paths []string, opt CacheOptions) error {
	chunk := len(procs) * 16
	results := make([]cacheResult, chunk)
	for start := 0; start < len(paths); start += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(chunk, len(paths)-start)
		decodeChunk(procs, paths[start:start+n], results[:n], opt)
		if err := w.addChunk(start, paths[start:start+n], results[:n], opt.OnBad); err != nil {
			return err
		}
		opt.Bar.Add(n)
	}
	return nil
}

// decodeChunk decodes paths into results (same positions) at the cache size, worker w taking
// every len(procs)-th path from w with procs[w], and waits for all of them.
func decodeChunk(procs []*Processor, paths []string, results []cacheResult, opt CacheOptions) {
	workers := len(procs)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var data []byte
			for i := w; i < len(paths); i += workers {
				m, err := cacheImage(procs[w], paths[i], &data, opt)
				results[i] = cacheResult{m, err}
			}
		}()
	}
	wg.Wait()
}

// addChunk writes the decoded images of one chunk (whose first path is paths' index start in the
// build) and records an index entry per path; a bad image is recorded as bad, or with Fail ends the
// build with an error naming the file.
func (w *cacheWriter) addChunk(start int, paths []string, results []cacheResult, policy BadPolicy) error {
	for i, r := range results {
		p := paths[i]
		if r.err != nil {
			if policy == Fail {
				return fmt.Errorf("%s: %w", p, r.err)
			}
			w.rep.Bad++
			w.rep.BadImages = append(w.rep.BadImages, BadImage{Index: start + i, Path: p, Err: r.err})
			w.entries = append(w.entries, cacheEntry{off: w.off, bad: true, path: p, errS: r.err.Error()})
			continue
		}
		if _, err := w.f.Write(r.m.Pix); err != nil {
			return err
		}
		w.entries = append(w.entries, cacheEntry{off: w.off, w: r.m.W, h: r.m.H, c: r.m.C, path: p})
		w.off += uint64(len(r.m.Pix))
		w.rep.Images++
	}
	return nil
}

// writeIndex writes one index record per entry after the pixel data.
func (w *cacheWriter) writeIndex() error {
	var rec []byte
	for _, e := range w.entries {
		var err error
		if rec, err = appendIndexRecord(rec[:0], e); err != nil {
			return err
		}
		if err := w.write(rec); err != nil {
			return err
		}
	}
	return nil
}

// write appends b to the file and advances the offset past it.
func (w *cacheWriter) write(b []byte) error {
	if _, err := w.f.Write(b); err != nil {
		return err
	}
	w.off += uint64(len(b))
	return nil
}

// appendIndexRecord appends the index record of e to rec: offset, width, height, channels, status,
// path and error lengths, path, error message (cut to what a u16 length can say).
func appendIndexRecord(rec []byte, e cacheEntry) ([]byte, error) {
	rec = binary.LittleEndian.AppendUint64(rec, e.off)
	rec = binary.LittleEndian.AppendUint16(rec, uint16(e.w))
	rec = binary.LittleEndian.AppendUint16(rec, uint16(e.h))
	status := byte(0)
	if e.bad {
		status = 1
	}
	rec = append(rec, byte(e.c), status)
	errS := e.errS
	if len(errS) > math.MaxUint16 {
		errS = errS[:math.MaxUint16]
	}
	if len(e.path) > math.MaxUint16 {
		return rec, fmt.Errorf("cache: path too long: %.80s...", e.path)
	}
	rec = binary.LittleEndian.AppendUint16(rec, uint16(len(e.path)))
	rec = binary.LittleEndian.AppendUint16(rec, uint16(len(errS)))
	rec = append(rec, e.path...)
	rec = append(rec, errS...)
	return rec, nil
}

// cacheFooter builds the 64-byte footer for count images whose index lies at
// [indexOff, indexOff+indexLen).
func cacheFooter(opt CacheOptions, count int, indexOff, indexLen uint64) []byte {
	foot := make([]byte, 0, footerLen)
	foot = append(foot, cacheMagic...)
	foot = binary.LittleEndian.AppendUint32(foot, cacheVersion)
	foot = binary.LittleEndian.AppendUint32(foot, uint32(opt.Size))
	crop := uint32(0)
	if opt.Crop {
		crop = 1
	}
	foot = binary.LittleEndian.AppendUint32(foot, crop)
	foot = binary.LittleEndian.AppendUint32(foot, 0)
	foot = binary.LittleEndian.AppendUint64(foot, uint64(count))
	foot = binary.LittleEndian.AppendUint64(foot, indexOff)
	foot = binary.LittleEndian.AppendUint64(foot, indexLen)
	foot = append(foot, make([]byte, footerLen-len(foot))...)
	return foot
}

// cacheImage decodes one file at the cache size.
func cacheImage(p *Processor, path string, data *[]byte, opt CacheOptions) (*Image, error) {
	b, err := readFile(path, *data)
	if err != nil {
		return nil, err
	}
	*data = b
	_, w, h, err := p.dec.Config(b)
	if err != nil {
		return nil, err
	}
	if err := checkSize(w, h, opt.MaxPixels); err != nil {
		return nil, err
	}
	short := min(w, h)
	f := float64(opt.Size) / float64(short)
	ow, oh := max(1, int(math.Round(float64(w)*f))), max(1, int(math.Round(float64(h)*f)))
	box := Box{0, 0, float64(w), float64(h)}
	if opt.Crop {
		s := float64(short)
		box = Box{(float64(w) - s) / 2, (float64(h) - s) / 2, (float64(w) + s) / 2, (float64(h) + s) / 2}
		ow, oh = opt.Size, opt.Size
	}
	minW := int(math.Ceil(float64(w) * float64(ow) / (box.X1 - box.X0)))
	minH := int(math.Ceil(float64(h) * float64(oh) / (box.Y1 - box.Y0)))
	m, err := p.dec.Decode(b, DecodeOptions{MaxPixels: opt.MaxPixels, MinW: minW, MinH: minH}, p.pix)
	if err != nil {
		return nil, err
	}
	p.pix = m.Pix
	out := &Image{Pix: make([]uint8, ow*oh*m.C), W: ow, H: oh, C: m.C, SrcW: w, SrcH: h}
	p.rs.Resample(m, box.Scaled(float64(m.W)/float64(w), float64(m.H)/float64(h)), ow, oh, out.Pix)
	return out, nil
}

// Cache is an opened cache file, mapped into memory.
type Cache struct {
	Path    string
	Size    int
	Crop    bool
	data    []byte
	entries []cacheEntry
	byPath  map[string]int
}

// OpenCache maps a cache file and reads its index.
func OpenCache(path string) (*Cache, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(len(cacheMagic))+footerLen {
		return nil, fmt.Errorf("%s: not a protoherb cache (too short)", path)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	c := &Cache{Path: path, data: data}
	if err := c.parse(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Cache) parse() error {
	d := c.data
	foot := d[len(d)-footerLen:]
	if string(d[:len(cacheMagic)]) != cacheMagic || string(foot[:8]) != cacheMagic {
		return errors.New("not a protoherb cache (bad magic; truncated?)")
	}
	le := binary.LittleEndian
	if v := le.Uint32(foot[8:]); v != cacheVersion {
		return fmt.Errorf("cache version %d, this build reads %d", v, cacheVersion)
	}
	c.Size = int(le.Uint32(foot[12:]))
	c.Crop = le.Uint32(foot[16:]) == 1
	count := le.Uint64(foot[24:])
	ioff, ilen := le.Uint64(foot[32:]), le.Uint64(foot[40:])
	if ioff+ilen != uint64(len(d)-footerLen) {
		return errors.New("index does not end at the footer (corrupt)")
	}
	idx := d[ioff : ioff+ilen]
	c.entries = make([]cacheEntry, 0, count)
	c.byPath = make(map[string]int, count)
	for i := uint64(0); i < count; i++ {
		if len(idx) < 18 {
			return fmt.Errorf("index record %d truncated", i)
		}
		e := cacheEntry{off: le.Uint64(idx), w: int(le.Uint16(idx[8:])), h: int(le.Uint16(idx[10:])), c: int(idx[12]), bad: idx[13] == 1}
		pl, el := int(le.Uint16(idx[14:])), int(le.Uint16(idx[16:]))
		if len(idx) < 18+pl+el {
			return fmt.Errorf("index record %d truncated", i)
		}
		e.path = string(idx[18 : 18+pl])
		e.errS = string(idx[18+pl : 18+pl+el])
		idx = idx[18+pl+el:]
		if !e.bad && e.off+uint64(e.w*e.h*e.c) > ioff {
			return fmt.Errorf("image %d (%s) lies outside the data", i, e.path)
		}
		c.byPath[e.path] = len(c.entries)
		c.entries = append(c.entries, e)
	}
	return nil
}

// Len is the number of images recorded (bad ones included).
func (c *Cache) Len() int { return len(c.entries) }

// Lookup returns the cached image of a path: ok is false when the cache does not hold it; err is set
// when the image was bad at build time. The pixels are read-only (they are the mapped file).
func (c *Cache) Lookup(path string) (img *Image, ok bool, err error) {
	i, found := c.byPath[path]
	if !found {
		return nil, false, nil
	}
	e := c.entries[i]
	if e.bad {
		return nil, true, fmt.Errorf("%w (recorded in cache %s): %s", ErrCorrupt, c.Path, e.errS)
	}
	n := uint64(e.w * e.h * e.c)
	return &Image{Pix: c.data[e.off : e.off+n : e.off+n], W: e.w, H: e.h, C: e.c, SrcW: e.w, SrcH: e.h}, true, nil
}

// Close unmaps the file; images returned by Lookup must not be used afterwards.
func (c *Cache) Close() error {
	if c.data == nil {
		return nil
	}
	err := syscall.Munmap(c.data)
	c.data = nil
	return err
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
