package dataset

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// openText opens a metadata file as UTF-8. Files that are valid UTF-8 are read as they are; any other
// file is taken to be Latin-1 (ISO-8859-1, as the Herbarium 2020 JSON is) and transcoded byte by byte,
// so names such as "Acanthaceæ" come out exactly. The check streams the file once (cheap: it is in the
// page cache for the second read).
func openText(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	valid, err := isUTF8(f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	if valid {
		return readCloser{br, f}, nil
	}
	return readCloser{&latin1Reader{r: br}, f}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// isUTF8 reports whether everything r yields is valid UTF-8.
func isUTF8(r io.Reader) (bool, error) {
	buf := make([]byte, 1<<20+utf8.UTFMax)
	carry := 0
	for {
		n, err := r.Read(buf[carry : carry+1<<20])
		n += carry
		if n > 0 {
			// Hold back an incomplete sequence at the end of the chunk for the next read.
			end := n
			for k := 1; k < utf8.UTFMax && k <= n; k++ {
				if utf8.RuneStart(buf[n-k]) {
					if !utf8.FullRune(buf[n-k : n]) {
						end = n - k
					}
					break
				}
			}
			if err == io.EOF {
				end = n
			}
			if !utf8.Valid(buf[:end]) {
				return false, nil
			}
			carry = copy(buf, buf[end:n])
		}
		if err == io.EOF {
			return carry == 0 || utf8.Valid(buf[:carry]), nil
		}
		if err != nil {
			return false, err
		}
	}
}

// latin1Reader transcodes ISO-8859-1 to UTF-8: bytes >= 0x80 become two-byte sequences.
type latin1Reader struct {
	r       io.Reader
	in      []byte
	pending []byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	n := 0
	for len(l.pending) > 0 && n < len(p) {
		p[n] = l.pending[0]
		l.pending = l.pending[1:]
		n++
	}
	if n == len(p) {
		return n, nil
	}
	want := (len(p) - n) / 2
	if want == 0 {
		want = 1
	}
	if cap(l.in) < want {
		l.in = make([]byte, want)
	}
	m, err := l.r.Read(l.in[:want])
	for _, b := range l.in[:m] {
		if b < 0x80 {
			if n < len(p) {
				p[n] = b
				n++
			} else {
				l.pending = append(l.pending, b)
			}
			continue
		}
		enc := [2]byte{0xC0 | b>>6, 0x80 | b&0x3F}
		for _, e := range enc {
			if n < len(p) {
				p[n] = e
				n++
			} else {
				l.pending = append(l.pending, e)
			}
		}
	}
	if err == io.EOF && len(l.pending) > 0 {
		err = nil
	}
	return n, err
}
