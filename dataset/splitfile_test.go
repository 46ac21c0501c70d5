package dataset

import (
	"path/filepath"
	"strings"
	"testing"
)

// A split file (path,class,split, as seed_pipeline.py writes it) opens as one dataset per split, with
// the classes of all rows numbered alike in every split.
func TestSplitFile(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "split.csv")
	write(t, file, "path,class,split\nb/1.jpg,b,test\na/1.jpg,a,train\nc/1.jpg,c,test\nb/2.jpg,b,train\na/2.jpg,a,train\n")
	want := map[string][]struct {
		path  string
		class string
	}{
		"train": {{"a/1.jpg", "a"}, {"b/2.jpg", "b"}, {"a/2.jpg", "a"}},
		"test":  {{"b/1.jpg", "b"}, {"c/1.jpg", "c"}},
	}
	for split, rows := range want {
		d, err := Open(file, Options{Split: split})
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Classes) != 3 || d.Classes[0].Name != "a" || d.Classes[2].Name != "c" {
			t.Errorf("%s: classes %+v, want a, b, c (all rows')", split, d.Classes)
		}
		if len(d.Samples) != len(rows) {
			t.Fatalf("%s: %d samples, want %d", split, len(d.Samples), len(rows))
		}
		for i, r := range rows {
			s := d.Samples[i]
			if s.Path != filepath.Join(root, r.path) || d.Classes[s.Label].Name != r.class {
				t.Errorf("%s row %d: %s class %s, want %s %s", split, i, s.Path, d.Classes[s.Label].Name, r.path, r.class)
			}
		}
	}
	if _, err := Open(file, Options{Split: "val"}); err == nil || !strings.Contains(err.Error(), `no row of split "val"`) {
		t.Errorf("a split with no rows: %v", err)
	}
}
