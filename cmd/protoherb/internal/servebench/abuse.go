package servebench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The load mixes of `bench serve` (Options.Mixes): the normal identify/enrol load alone, or
// with abusive clients next to it.
const (
	MixNormal = "normal"
	// MixBombs adds BombClients clients that loop over images the service must refuse or bound:
	// a header declaring 10¹⁰ pixels, the 7000×7000 PNG (~0.3 MB, 343 MB to decode) and a
	// 6000×6000 PNG under the default pixel limit, which is decoded.
	MixBombs = "bombs"
	// MixStalled adds StalledClients connections that send the headers and first bytes of an
	// identify upload and then stall (reconnecting when the server cuts them off).
	MixStalled = "stalled"
)

// Sizes of the abusive mixes.
const (
	BombClients    = 4
	StalledClients = 130
)

// abuse is the abusive part of one bench run.
type abuse struct {
	sent, refused, answered atomic.Int64 // requests sent; refused (4xx/5xx) or cut off; answered 2xx
	wg                      sync.WaitGroup
}

// abuseImages are the images of MixBombs, made once per bench.
type abuseImages struct{ header, big, under []byte }

func makeAbuseImages() (*abuseImages, error) {
	big, err := flatPNG(7000, 7000)
	if err != nil {
		return nil, err
	}
	under, err := flatPNG(6000, 6000)
	if err != nil {
		return nil, err
	}
	return &abuseImages{header: headerPNG(100000, 100000), big: big, under: under}, nil
}

// flatImage is a w×h image of one colour that png.Encode reads without w×h×4 bytes of memory.
type flatImage struct {
	image.Uniform
	r image.Rectangle
}

func (f *flatImage) Bounds() image.Rectangle { return f.r }

// flatPNG encodes a w×h opaque RGB PNG of one colour: tiny to send, w×h×7 bytes to decode.
func flatPNG(w, h int) ([]byte, error) {
	var buf bytes.Buffer
	m := &flatImage{Uniform: image.Uniform{C: color.RGBA{90, 120, 60, 255}}, r: image.Rect(0, 0, w, h)}
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, m); err != nil {
		return nil, fmt.Errorf("bench serve: encoding a %d×%d PNG: %w", w, h, err)
	}
	return buf.Bytes(), nil
}

// headerPNG is a PNG signature and IHDR declaring w×h pixels, with no pixel data.
func headerPNG(w, h int) []byte {
	ihdr := make([]byte, 0, 17)
	ihdr = append(ihdr, "IHDR"...)
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	ihdr = append(ihdr, 8, 2, 0, 0, 0) // 8-bit RGB
	b := []byte("\x89PNG\r\n\x1a\n")
	b = binary.BigEndian.AppendUint32(b, 13)
	b = append(b, ihdr...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(ihdr))
}

// startAbuse runs the abusive clients of mix against base until ctx ends.
func startAbuse(ctx context.Context, mix, base string, client *http.Client, imgs *abuseImages) *abuse {
	a := &abuse{}
	switch mix {
	case MixBombs:
		bodies := [][]byte{imgs.header, imgs.big, imgs.under}
		for i := range BombClients {
			a.wg.Go(func() {
				for j := i; ctx.Err() == nil; j++ {
					a.post(ctx, client, base, bodies[j%len(bodies)])
				}
			})
		}
	case MixStalled:
		addr := strings.TrimPrefix(base, "http://")
		for range StalledClients {
			a.wg.Go(func() {
				for ctx.Err() == nil {
					a.stall(ctx, addr)
				}
			})
		}
	}
	return a
}

func (a *abuse) post(ctx context.Context, client *http.Client, base string, body []byte) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/identify", bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "image/png")
	a.sent.Add(1)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			a.refused.Add(1)
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 300 {
		a.answered.Add(1)
	} else {
		a.refused.Add(1)
	}
}

// stall sends an upload's headers and first bytes and waits, until the server answers or closes
// the connection or ctx ends.
func (a *abuse) stall(ctx context.Context, addr string) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	a.sent.Add(1)
	fmt.Fprintf(conn, "POST /v1/identify HTTP/1.1\r\nHost: %s\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n\xff\xd8\xff\xe0", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		resp.Body.Close()
	}
	a.refused.Add(1) // answered (408) or closed: cut off either way
}

// stop waits for the abusive clients (their context must have ended).
func (a *abuse) stop() { a.wg.Wait() }

// resetPeakRSS starts a new peak of the process's resident memory (Linux: /proc/self/clear_refs);
// it reports whether the kernel allowed it.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns the process's peak resident memory in bytes (VmHWM), 0 when unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// benchRun is one timed run of the bench: a load mix at a number of identify clients.
type benchRun struct {
	mix     string
	clients int
}

// benchRuns lists the runs, each mix at each client level, and makes the bombs when a mix needs
// them.
func benchRuns(mixes []string, clients []int) ([]benchRun, *abuseImages, error) {
	if len(mixes) == 0 {
		mixes = []string{MixNormal}
	}
	var runs []benchRun
	var imgs *abuseImages
	for _, m := range mixes {
		switch m {
		case MixNormal, MixStalled:
		case MixBombs:
			if imgs == nil {
				var err error
				if imgs, err = makeAbuseImages(); err != nil {
					return nil, nil, err
				}
			}
		default:
			return nil, nil, fmt.Errorf("bench serve: unknown mix %q (want %s, %s or %s)", m, MixNormal, MixBombs, MixStalled)
		}
		for _, c := range clients {
			runs = append(runs, benchRun{mix: m, clients: c})
		}
	}
	return runs, imgs, nil
}
