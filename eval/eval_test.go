package eval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type expectedFixture struct {
	MacroF1    float64               `json:"macro_f1"`
	Accuracy   float64               `json:"accuracy"`
	Labels     int                   `json:"labels"`
	NoPred     int                   `json:"no_pred"`
	NoTrue     int                   `json:"no_true"`
	PerClass   map[string][4]float64 `json:"per_class"`
	Top5       *float64              `json:"top5_accuracy"`
	Groups     map[string]float64    `json:"groups"`
	SameGenus  *float64              `json:"same_genus"`
	SameFamily *float64              `json:"same_family"`
}

type expectedFile struct {
	TailMax   int                        `json:"tail_max"`
	MediumMax int                        `json:"medium_max"`
	Fixtures  map[string]expectedFixture `json:"fixtures"`
}

const tol = 1e-12

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.17g, want %.17g (scikit-learn)", what, got, want)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestScikitLearnFixtures compares every fixture with the values scikit-learn computed
// (testdata/gen_fixtures.py).
func TestScikitLearnFixtures(t *testing.T) {
	data, err := os.ReadFile("testdata/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var exp expectedFile
	if err := json.Unmarshal(data, &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp.Fixtures) < 8 {
		t.Fatalf("only %d fixtures in expected.json", len(exp.Fixtures))
	}
	for name, want := range exp.Fixtures {
		t.Run(name, func(t *testing.T) {
			base := filepath.Join("testdata", name)
			in := Inputs{Pred: base + ".pred.csv", Truth: base + ".truth.csv"}
			if exists(base + ".topk.csv") {
				in.TopK = base + ".topk.csv"
			}
			if exists(base + ".classes.csv") {
				in.Classes = base + ".classes.csv"
			}
			r, err := EvaluateFiles(in, Options{TailMax: exp.TailMax, MediumMax: exp.MediumMax})
			if err != nil {
				t.Fatal(err)
			}
			near(t, "macro-F1", r.MacroF1, want.MacroF1)
			if r.MacroF1 != want.MacroF1 {
				t.Errorf("macro-F1 %.17g differs from scikit-learn's %.17g in the last bits", r.MacroF1, want.MacroF1)
			}
			near(t, "accuracy", r.Accuracy, want.Accuracy)
			if r.Labels != want.Labels || r.NoPred != want.NoPred || r.NoTrue != want.NoTrue {
				t.Errorf("labels/never predicted/never true = %d/%d/%d, want %d/%d/%d",
					r.Labels, r.NoPred, r.NoTrue, want.Labels, want.NoPred, want.NoTrue)
			}
			if want.PerClass != nil {
				if len(r.Classes) != len(want.PerClass) {
					t.Fatalf("%d classes, want %d", len(r.Classes), len(want.PerClass))
				}
				for _, c := range r.Classes {
					w, ok := want.PerClass[strconv.FormatInt(c.Class, 10)]
					if !ok {
						t.Fatalf("class %d not in scikit-learn's labels", c.Class)
					}
					near(t, "precision of "+strconv.FormatInt(c.Class, 10), c.Precision, w[0])
					near(t, "recall of "+strconv.FormatInt(c.Class, 10), c.Recall, w[1])
					near(t, "F1 of "+strconv.FormatInt(c.Class, 10), c.F1, w[2])
					if c.Support != int(w[3]) {
						t.Errorf("support of %d = %d, want %v", c.Class, c.Support, w[3])
					}
				}
			}
			if want.Top5 != nil {
				if r.TopK != 5 {
					t.Errorf("top-k = %d, want 5", r.TopK)
				}
				near(t, "top-5 accuracy", r.TopKAccuracy, *want.Top5)
			}
			if want.Groups != nil {
				if len(r.Groups) != len(want.Groups) {
					t.Errorf("%d groups, want %d", len(r.Groups), len(want.Groups))
				}
				labels := 0
				weighted := 0.0
				for _, g := range r.Groups {
					near(t, g.Name+" macro-F1", g.MacroF1, want.Groups[g.Name])
					labels += g.Labels
					weighted += g.MacroF1 * float64(g.Labels)
				}
				if labels != r.Labels {
					t.Errorf("groups hold %d labels, want all %d", labels, r.Labels)
				}
				if math.Abs(weighted/float64(labels)-r.MacroF1) > 1e-9 {
					t.Errorf("label-weighted group mean %v != macro-F1 %v", weighted/float64(labels), r.MacroF1)
				}
			}
			if want.SameGenus != nil {
				tx := r.Taxonomy
				if tx == nil {
					t.Fatal("no taxonomy summary")
				}
				near(t, "same genus", float64(tx.SameGenus)/float64(tx.Errors), *want.SameGenus)
				near(t, "same family", float64(tx.SameFamily)/float64(tx.FamilyErrors), *want.SameFamily)
			}
		})
	}
}

func TestMacroF1Pure(t *testing.T) {
	// basic fixture, by hand: per-class F1 2/3, 4/5, 2/3, 2/3 → mean 0.7.
	got := MacroF1([]int64{0, 0, 0, 1, 1, 2, 2, 2, 3, 3}, []int64{0, 0, 1, 1, 1, 2, 0, 2, 3, 2})
	near(t, "MacroF1", got, 0.7)
	if got := MacroF1([]int64{1, 2}, []int64{3, 4}); got != 0 {
		t.Errorf("disjoint labels: %v, want 0", got)
	}
}

func TestMeanMatchesNumpyBlocks(t *testing.T) {
	// Sums of equal values are exact whatever the order; check lengths around the block edges.
	for _, n := range []int{1, 7, 8, 9, 127, 128, 129, 8191, 8192, 8193, 20000} {
		a := make([]float64, n)
		for i := range a {
			a[i] = 0.25
		}
		if m := Mean(a); m != 0.25 {
			t.Errorf("Mean of %d × 0.25 = %v", n, m)
		}
	}
	if Mean(nil) != 0 {
		t.Error("Mean(nil) != 0")
	}
}

func labels(t *testing.T, name, body string) *Labels {
	t.Helper()
	l, err := ReadLabels(strings.NewReader(body), name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return l
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestReadLabelsErrors(t *testing.T) {
	cases := []struct {
		body  string
		parts []string
	}{
		{"", []string{"sub.csv", "empty file"}},
		{"1,2\n", []string{"sub.csv", `header is "1,2"`, "Id,Predicted"}},
		{"Id,Class\n1,2\n", []string{"header", "Id,Predicted"}},
		{"Id,Predicted\n1,2\n3,4\n1,5\n", []string{"sub.csv:4", "duplicate Id 1", "line 2"}},
		{"Id,Predicted\n1,2\nx,4\n", []string{"sub.csv:3", `Id "x" is not an integer`}},
		{"Id,Predicted\n1,2.5\n", []string{"sub.csv:2", `Predicted "2.5" is not an integer`}},
		{"Id,Predicted\n1,-3\n", []string{"sub.csv:2", "not a class id"}},
		{"Id,Predicted\n1,2,3\n", []string{"sub.csv:2", "3 fields, want 2"}},
		{"Id,Predicted\n1,\"2\n", []string{"sub.csv:2"}},
	}
	for _, c := range cases {
		_, err := ReadLabels(strings.NewReader(c.body), "sub.csv")
		wantErr(t, err, c.parts...)
	}
	// A Kaggle solution's Usage column is ignored.
	l := labels(t, "solution.csv", "Id,Predicted,Usage\n1,2,Public\n3,4,Private\n")
	if len(l.IDs) != 2 || l.Class[1] != 4 {
		t.Errorf("solution with Usage read as %+v", l)
	}
	_, err := ReadLabels(strings.NewReader("Id,Predicted,Usage\n1,2\n"), "solution.csv")
	wantErr(t, err, "solution.csv:2", "2 fields, want 3")
	// A byte order mark and spaces are tolerated.
	l = labels(t, "bom.csv", "\ufeffId, Predicted\r\n 7 , 8\r\n")
	if len(l.IDs) != 1 || l.IDs[0] != 7 || l.Class[0] != 8 || l.Line[0] != 2 {
		t.Errorf("BOM file read as %+v", l)
	}
}

func TestEvaluateIdMismatch(t *testing.T) {
	truth := labels(t, "truth.csv", "Id,Predicted\n1,1\n2,2\n3,3\n")
	pred := labels(t, "sub.csv", "Id,Predicted\n1,1\n2,2\n4,3\n")
	_, err := Evaluate(truth, pred, Options{})
	wantErr(t, err, "truth.csv:4: Id 3 has no row in sub.csv", "sub.csv:4: Id 4 is not in truth.csv", "2 problems")

	pred = labels(t, "sub.csv", "Id,Predicted\n1,1\n2,2\n")
	_, err = Evaluate(truth, pred, Options{})
	wantErr(t, err, "truth.csv:4: Id 3 has no row in sub.csv")

	many := "Id,Predicted\n"
	for i := 10; i < 30; i++ {
		many += strconv.Itoa(i) + ",1\n"
	}
	_, err = Evaluate(truth, labels(t, "sub.csv", many), Options{})
	wantErr(t, err, "23 problems", "and 18 more")

	_, err = Evaluate(labels(t, "truth.csv", "Id,Predicted\n"), labels(t, "sub.csv", "Id,Predicted\n"), Options{})
	wantErr(t, err, "truth.csv: no rows")
}

func TestEvaluateUnknownLabels(t *testing.T) {
	classes := Classes{1: {TrainCount: 5}, 2: {TrainCount: 50}}
	truth := labels(t, "truth.csv", "Id,Predicted\n1,1\n2,99999\n")
	pred := labels(t, "sub.csv", "Id,Predicted\n1,1\n2,2\n")
	_, err := Evaluate(truth, pred, Options{Classes: classes, ClassesName: "classes.csv"})
	wantErr(t, err, "truth.csv:3: label 99999 is not a known class (not in classes.csv)")

	truth = labels(t, "truth.csv", "Id,Predicted\n1,1\n2,2\n")
	pred = labels(t, "sub.csv", "Id,Predicted\n1,1\n2,7\n")
	_, err = Evaluate(truth, pred, Options{Classes: classes})
	wantErr(t, err, "sub.csv:3: label 7 is not a known class")

	_, err = Evaluate(truth, truth, Options{Classes: classes, TailMax: 50, MediumMax: 20})
	wantErr(t, err, "thresholds")
}

func TestTopKErrors(t *testing.T) {
	cases := []struct {
		body  string
		parts []string
	}{
		{"Id,Predicted\n", []string{"top.csv", "Id,Rank,Predicted,Distance"}},
		{"Id,Rank,Predicted,Distance\n1,0,5,0.1\n", []string{"top.csv:2", "Rank 0 is out of range"}},
		{"Id,Rank,Predicted,Distance\n1,1,5,abc\n", []string{"top.csv:2", `Distance "abc" is not a number`}},
		{"Id,Rank,Predicted,Distance\n1,1,5,NaN\n", []string{"top.csv:2", "not a number"}},
		{"Id,Rank,Predicted,Distance\n1,1,5,0.1\n1,3,6,0.2\n", []string{"top.csv", "Id 1 (line 2) has no Rank 2"}},
		{"Id,Rank,Predicted,Distance\n1,1,5,0.1\n1,1,6,0.2\n", []string{"top.csv:3", "Rank 1 twice", "line 2"}},
		{"Id,Rank,Predicted,Distance\n1,2,5,0.1\n1,1,5,0.2\n", []string{"top.csv:2", "class 5 twice", "line 3"}},
		{"Id,Rank,Predicted,Distance\n1,x,5,0.1\n", []string{"top.csv:2", `Rank "x" is not an integer`}},
	}
	for _, c := range cases {
		_, err := ReadTopK(strings.NewReader(c.body), "top.csv")
		wantErr(t, err, c.parts...)
	}
	tk, err := ReadTopK(strings.NewReader("Id,Rank,Predicted,Distance\n1,1,5,0.1\n1,2,6,0.2\n9,1,5,0.3\n"), "top.csv")
	if err != nil {
		t.Fatal(err)
	}
	if tk.K != 1 {
		t.Errorf("K = %d, want the smallest count 1", tk.K)
	}
	truth := labels(t, "truth.csv", "Id,Predicted\n1,6\n2,5\n")
	_, err = Evaluate(truth, truth, Options{TopK: tk})
	wantErr(t, err, "truth.csv:3: Id 2 has no rows in top.csv", "top.csv:4: Id 9 is not in truth.csv")
}

func TestTopKAccuracyWithFewRanks(t *testing.T) {
	tk, err := ReadTopK(strings.NewReader("Id,Rank,Predicted,Distance\n1,2,6,0.2\n1,1,5,0.1\n2,1,5,0.3\n2,2,7,0.3\n"), "top.csv")
	if err != nil {
		t.Fatal(err)
	}
	truth := labels(t, "truth.csv", "Id,Predicted\n1,6\n2,5\n")
	pred := labels(t, "sub.csv", "Id,Predicted\n1,5\n2,5\n")
	r, err := Evaluate(truth, pred, Options{TopK: tk})
	if err != nil {
		t.Fatal(err)
	}
	if r.TopK != 2 || r.TopKAccuracy != 1 || len(r.AtK) != 2 || r.AtK[0] != 0.5 {
		t.Errorf("top-k = %d, accuracy %v, at k %v; want 2, 1, [0.5 1]", r.TopK, r.TopKAccuracy, r.AtK)
	}
}

func TestClassesFile(t *testing.T) {
	c, err := ReadClasses(strings.NewReader("train_count,class_id,extra\n3,7,x\n0,9,y\n"), "c.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 2 || c[7].TrainCount != 3 || c[9].TrainCount != 0 || c[7].Genus != "" {
		t.Errorf("read %+v", c)
	}
	for _, cs := range []struct {
		body  string
		parts []string
	}{
		{"class_id,name\n1,a\n", []string{"c.csv", "no train_count column"}},
		{"class_id,train_count\n1,2\n1,3\n", []string{"c.csv:3", "duplicate class_id 1", "line 2"}},
		{"class_id,train_count\n1,-2\n", []string{"c.csv:2", "negative"}},
		{"class_id,train_count,class_id\n", []string{"twice"}},
		{"class_id,train_count\n1,many\n", []string{"c.csv:2", `train_count "many" is not an integer`}},
	} {
		_, err := ReadClasses(strings.NewReader(cs.body), "c.csv")
		wantErr(t, err, cs.parts...)
	}
}

func TestWritersRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSubmission(&b, []int64{5, 3}, []int64{15672, 0}); err != nil {
		t.Fatal(err)
	}
	if b.String() != "Id,Predicted\n5,15672\n3,0\n" {
		t.Errorf("submission:\n%s", b.String())
	}
	b.Reset()
	ranked := [][]Ranked{{{15672, 0.8131}, {15670, 0.9022}}, {{3, 1}, {4, 1}}}
	if err := WriteTopK(&b, []int64{0, 1}, ranked); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "Id,Rank,Predicted,Distance\n0,1,15672,0.8131\n0,2,15670,0.9022\n1,1,3,1\n") {
		t.Errorf("top-k:\n%s", b.String())
	}
	tk, err := ReadTopK(&b, "x")
	if err != nil || tk.K != 2 || tk.ByID[0][1] != ranked[0][1] {
		t.Errorf("top-k round trip: %+v, %v", tk, err)
	}
	b.Reset()
	cl := Classes{2: {Name: "Acer rubrum", Genus: "Acer", Family: "Sapindaceae", TrainCount: 40}, 1: {Name: "a,b", TrainCount: 1}}
	if err := WriteClasses(&b, cl); err != nil {
		t.Fatal(err)
	}
	back, err := ReadClasses(&b, "x")
	if err != nil || len(back) != 2 || back[2] != cl[2] || back[1] != cl[1] {
		t.Errorf("classes round trip: %+v, %v", back, err)
	}
}

func TestWriteDir(t *testing.T) {
	r, err := EvaluateFiles(Inputs{Pred: "testdata/medium.pred.csv", Truth: "testdata/medium.truth.csv",
		TopK: "testdata/medium.topk.csv", Classes: "testdata/medium.classes.csv"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "report")
	if err := r.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, SummaryMD))
	if err != nil {
		t.Fatal(err)
	}
	head := fmt.Sprintf("macro-F1 (scikit-learn, %d labels) | **%.6f**", r.Labels, r.MacroF1)
	for _, s := range []string{head, "top-5 accuracy", "| tail | ≤ 19 |",
		"| head | > 100 |", "in the true genus", "![Genus confusion](genus_confusion.png)", "f1_by_frequency.png"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("summary.md lacks %q", s)
		}
	}
	csvb, _ := os.ReadFile(filepath.Join(dir, PerClassCSV))
	lines := strings.Split(strings.TrimSpace(string(csvb)), "\n")
	if len(lines) != r.Labels+1 || !strings.HasPrefix(lines[0], "class_id,name,genus,family,group,train_count,support") {
		t.Errorf("per_class.csv: %d lines, header %q", len(lines), lines[0])
	}
	var js map[string]any
	jb, _ := os.ReadFile(filepath.Join(dir, SummaryJSON))
	if err := json.Unmarshal(jb, &js); err != nil || js["macro_f1"].(float64) != r.MacroF1 {
		t.Errorf("summary.json: %v %v", err, js["macro_f1"])
	}
	for _, name := range []string{F1ByFreqPNG, GenusConfusion} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if d := os.Getenv("PROTOHERB_PLOT_DIR"); d != "" {
			os.WriteFile(filepath.Join(d, name), b, 0o644)
		}
	}
	if d := os.Getenv("PROTOHERB_PLOT_DIR"); d != "" {
		os.WriteFile(filepath.Join(d, SummaryMD), md, 0o644)
	}

	// Without class information: no groups, no plots, still a summary.
	r2, err := EvaluateFiles(Inputs{Pred: "testdata/basic.pred.csv", Truth: "testdata/basic.truth.csv"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	if err := r2.WriteDir(dir2); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(dir2, F1ByFreqPNG)) || !exists(filepath.Join(dir2, SummaryMD)) {
		t.Error("report without classes: wrong set of files")
	}
}
