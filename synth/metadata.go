package synth

import (
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"protoherb/atomicfile"
)

// The metadata is streamed the way Python's json.dump writes the original: keys in sorted order,
// ", " and ": " separators, one line, and non-ASCII characters as raw Latin-1 bytes (which makes the
// file invalid UTF-8, the quirk a reader must handle).

// jsonWriter writes JSON tokens and remembers the first error.
type jsonWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func (j *jsonWriter) raw(s string) {
	if j.err == nil {
		_, j.err = io.WriteString(j.w, s)
	}
}

func (j *jsonWriter) int(v int) {
	j.buf = strconv.AppendInt(j.buf[:0], int64(v), 10)
	if j.err == nil {
		_, j.err = j.w.Write(j.buf)
	}
}

// latin1 writes s (UTF-8) as a JSON string of Latin-1 bytes.
func (j *jsonWriter) latin1(s string) {
	b, err := appendLatin1JSON(j.buf[:0], s)
	j.buf = b
	if err != nil && j.err == nil {
		j.err = err
	}
	if j.err == nil {
		_, j.err = j.w.Write(b)
	}
}

// appendLatin1JSON appends s as a quoted JSON string whose non-ASCII characters are single Latin-1
// bytes. Characters beyond U+00FF cannot be written and are an error.
func appendLatin1JSON(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return b, fmt.Errorf("name %q is not valid UTF-8", s)
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = fmt.Appendf(b, `\u%04x`, r)
		case r <= 0xff:
			b = append(b, byte(r))
		default:
			return b, fmt.Errorf("name %q has %q, which Latin-1 cannot hold", s, r)
		}
	}
	return append(b, '"'), nil
}

const (
	infoJSON = `"info": {"contributor": "protoherb synth", "date_created": "2020-02-18", ` +
		`"description": "Synthetic herbarium specimens in the Herbarium 2020 (FGVC7) layout", ` +
		`"url": "https://github.com/visipedia/herbarium_comp", "version": "1.0", "year": 2020}`
	licensesJSON = `"licenses": [{"id": 1, "name": "CC0 1.0 Universal (synthetic images)", ` +
		`"url": "https://creativecommons.org/publicdomain/zero/1.0/"}]`
)

func (p *plan) writeTrainMetadata(path string) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		j := &jsonWriter{w: w}
		j.raw(`{"annotations": [`)
		for id, c := range p.trainClass {
			if id > 0 {
				j.raw(", ")
			}
			h := p.header(imageRand(p.cfg.Seed, splitTrain, id), int(c))
			j.raw(`{"category_id": `)
			j.int(int(c))
			j.raw(`, "id": `)
			j.int(id)
			j.raw(`, "image_id": `)
			j.int(id)
			j.raw(`, "region_id": `)
			j.int(h.region)
			j.raw("}")
		}
		j.raw(`], "categories": [`)
		for i, c := range p.tax.categories {
			if i > 0 {
				j.raw(", ")
			}
			j.raw(`{"family": `)
			j.latin1(c.Family)
			j.raw(`, "genus": `)
			j.latin1(c.Genus)
			j.raw(`, "id": `)
			j.int(c.ID)
			j.raw(`, "name": `)
			j.latin1(c.Name)
			j.raw("}")
		}
		j.raw(`], `)
		p.writeImages(j, splitTrain, len(p.trainClass))
		j.raw(", " + infoJSON + ", " + licensesJSON + `, "regions": [`)
		for i, name := range regions {
			if i > 0 {
				j.raw(", ")
			}
			j.raw(`{"id": `)
			j.int(i)
			j.raw(`, "name": `)
			j.latin1(name)
			j.raw("}")
		}
		j.raw("]}\n")
		return j.err
	})
}

func (p *plan) writeTestMetadata(path string) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		j := &jsonWriter{w: w}
		j.raw("{")
		p.writeImages(j, splitTest, len(p.testClass))
		j.raw(", " + infoJSON + ", " + licensesJSON + "}\n")
		return j.err
	})
}

// writeImages writes the "images" member of a split.
func (p *plan) writeImages(j *jsonWriter, split, n int) {
	j.raw(`"images": [`)
	for id := range n {
		if id > 0 {
			j.raw(", ")
		}
		h := p.header(imageRand(p.cfg.Seed, split, id), p.class(split, id))
		j.raw(`{"file_name": "`)
		j.raw(p.fileName(split, id))
		j.raw(`", "height": `)
		j.int(h.height)
		j.raw(`, "id": `)
		j.int(id)
		j.raw(`, "license": 1, "width": `)
		j.int(h.width)
		j.raw("}")
	}
	j.raw("]")
}

// writeSolution writes Id,Predicted with the true category of every test image, in id order.
func (p *plan) writeSolution(path string) error {
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		if _, err := io.WriteString(w, "Id,Predicted\n"); err != nil {
			return err
		}
		var b []byte
		for id, c := range p.testClass {
			b = strconv.AppendInt(b[:0], int64(id), 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(c), 10)
			b = append(b, '\n')
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
}
