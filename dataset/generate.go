package dataset

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
)

// GenerateOptions size a synthetic Herbarium 2020 metadata file.
type GenerateOptions struct {
	Images, Classes int
	Seed            uint64
	// Test writes a test file (images only, path scheme images/<id/1000>/<id>.jpg).
	Test bool
}

// latin1Names are category name parts holding Latin-1 bytes (written raw, as in the real file).
var latin1Names = []string{"Acanthace\xe6", "Ruellia blechum \xd7", "Comp\xf3sitae", "Gentiana \xd7 marcailhouana"}

// WriteHerbarium2020Metadata writes a metadata.json in the Herbarium 2020 format with the given
// number of images and classes (every class gets at least one image when Images >= Classes), Latin-1
// bytes in some names, keys in the real file's order and the real path scheme. Used for benchmarks
// and by generators of synthetic collections.
func WriteHerbarium2020Metadata(w io.Writer, opt GenerateOptions) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	r := rand.New(rand.NewPCG(opt.Seed, 2020))
	n, nc := opt.Images, max(opt.Classes, 1)
	catOf := func(i int) int {
		if i < nc {
			return i
		}
		// A long tail: squaring a uniform variate favours low class ids.
		u := r.Float64()
		return int(u * u * float64(nc))
	}
	if !opt.Test {
		cats := make([]int, n)
		for i := range cats {
			cats[i] = catOf(i)
		}
		bw.WriteString(`{"annotations": [`)
		for i, c := range cats {
			if i > 0 {
				bw.WriteString(", ")
			}
			fmt.Fprintf(bw, `{"category_id": %d, "id": %d, "image_id": %d, "region_id": %d}`, c, i, i, c%7)
		}
		bw.WriteString(`], "categories": [`)
		for c := 0; c < nc; c++ {
			if c > 0 {
				bw.WriteString(", ")
			}
			fam := fmt.Sprintf("Family%d", c/50)
			name := fmt.Sprintf("Genus%d species%d", c/5, c)
			if c%97 == 0 {
				fam = latin1Names[(c/97)%2]
				name = latin1Names[2+(c/97)%2] + fmt.Sprintf(" %d", c)
			}
			fmt.Fprintf(bw, `{"family": "%s", "genus": "Genus%d", "id": %d, "name": "%s"}`, fam, c/5, c, name)
		}
		bw.WriteString(`], "images": [`)
		for i, c := range cats {
			if i > 0 {
				bw.WriteString(", ")
			}
			fmt.Fprintf(bw, `{"file_name": "images/%03d/%02d/%d.jpg", "height": 1000, "id": %d, "license": 1, "width": %d}`,
				c/100, c%100, i, i, 600+r.IntN(150))
		}
		bw.WriteString(`], "info": {"year": 2020, "version": "1", "description": "synthetic"}, "licenses": [{"id": 1, "name": "synthetic", "url": ""}], "regions": [{"id": 1, "name": "Region"}]}`)
	} else {
		bw.WriteString(`{"images": [`)
		for i := 0; i < n; i++ {
			if i > 0 {
				bw.WriteString(", ")
			}
			fmt.Fprintf(bw, `{"file_name": "images/%03d/%d.jpg", "height": 1000, "id": %d, "license": 1, "width": 667}`, i/1000, i, i)
		}
		bw.WriteString(`], "info": {"year": 2020}, "licenses": [{"id": 1, "name": "synthetic", "url": ""}]}`)
	}
	return bw.Flush()
}
