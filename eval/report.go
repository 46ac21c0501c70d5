package eval

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"protoherb/atomicfile"
	"protoherb/plot"
)

// Report files written by WriteDir.
const (
	SummaryMD      = "summary.md"
	SummaryJSON    = "summary.json"
	PerClassCSV    = "per_class.csv"
	F1ByFreqPNG    = "f1_by_frequency.png"
	GenusConfusion = "genus_confusion.png"
)

// WriteDir writes the report into dir (created if needed): summary.md, summary.json (everything but the
// per-class rows), per_class.csv, and, when training counts are known, f1_by_frequency.png, and when
// taxonomy is known, genus_confusion.png. Everything is rendered before the first file is written,
// and each file is replaced atomically.
func (r *Report) WriteDir(dir string) error {
	files := map[string][]byte{}
	var order []string
	add := func(name string, b []byte) { files[name] = b; order = append(order, name) }

	var csvBuf bytes.Buffer
	if err := r.WritePerClass(&csvBuf); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r.summary(), "", "  ")
	if err != nil {
		return err
	}
	if len(r.Bins) > 0 {
		bars := make([]plot.Bar, len(r.Bins))
		for i, b := range r.Bins {
			bars[i] = plot.Bar{Label: b.Name, Value: b.MacroF1, Note: fmt.Sprintf("n=%d", b.Labels)}
		}
		png, err := plot.BarsPNG(plot.BarChart{
			Title:  fmt.Sprintf("Macro-F1 by training images per class (overall %.4f)", r.MacroF1),
			XLabel: "training images of the class (n = classes in the bin)", YLabel: "macro-F1",
			Bars: bars, YMax: 1})
		if err != nil {
			return fmt.Errorf("%s: %w", F1ByFreqPNG, err)
		}
		add(F1ByFreqPNG, png)
	}
	if t := r.Taxonomy; t != nil && len(t.Genera) > 0 {
		png, err := plot.HeatmapPNG(plot.Heatmap{
			Title: fmt.Sprintf("Errors among the %d genera most involved in errors (diagonal: within a genus)",
				len(t.Genera)),
			XLabel: "predicted genus", YLabel: "true genus", Rows: t.Genera, Cols: t.Genera, Values: t.Matrix})
		if err != nil {
			return fmt.Errorf("%s: %w", GenusConfusion, err)
		}
		add(GenusConfusion, png)
	}
	add(PerClassCSV, csvBuf.Bytes())
	add(SummaryJSON, append(js, '\n'))
	add(SummaryMD, []byte(r.Markdown(files)))

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	for _, name := range order {
		b := files[name]
		if err := atomicfile.WriteFile(filepath.Join(dir, name), func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// WritePerClass writes one CSV row per union label:
// class_id,name,genus,family,group,train_count,support,predicted,tp,precision,recall,f1
// (train_count empty when unknown).
func (r *Report) WritePerClass(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"class_id", "name", "genus", "family", "group", "train_count", "support", "predicted", "tp",
		"precision", "recall", "f1"})
	for _, c := range r.Classes {
		tc := ""
		if c.TrainCount >= 0 {
			tc = strconv.Itoa(c.TrainCount)
		}
		cw.Write([]string{strconv.FormatInt(c.Class, 10), c.Name, c.Genus, c.Family, c.Group, tc, strconv.Itoa(c.Support),
			strconv.Itoa(c.Predicted), strconv.Itoa(c.TP), ftoa(c.Precision), ftoa(c.Recall), ftoa(c.F1)})
	}
	cw.Flush()
	return cw.Error()
}

// summary is the JSON form of the report (without per-class rows).
func (r *Report) summary() any {
	type group struct {
		Name     string  `json:"name"`
		Range    string  `json:"train_images"`
		Labels   int     `json:"labels"`
		Support  int     `json:"support"`
		Correct  int     `json:"correct"`
		MacroF1  float64 `json:"macro_f1"`
		Accuracy float64 `json:"accuracy"`
	}
	conv := func(gs []GroupScore) []group {
		out := make([]group, len(gs))
		for i, g := range gs {
			out[i] = group{g.Name, g.Range(), g.Labels, g.Support, g.Correct, g.MacroF1, g.Accuracy}
		}
		return out
	}
	s := map[string]any{
		"truth": r.Truth, "pred": r.Pred, "images": r.Images, "correct": r.Correct,
		"accuracy": r.Accuracy, "macro_f1": r.MacroF1, "labels": r.Labels,
		"labels_never_predicted": r.NoPred, "labels_never_true": r.NoTrue,
		"tail_max": r.TailMax, "medium_max": r.MediumMax, "top_confusions": r.TopConfusions,
	}
	if r.TopK > 0 {
		s["topk_file"], s["topk"], s["topk_accuracy"], s["accuracy_at_k"] = r.TopKFile, r.TopK, r.TopKAccuracy, r.AtK
	}
	if r.Groups != nil {
		s["groups"], s["bins"] = conv(r.Groups), conv(r.Bins)
	}
	if r.Taxonomy != nil {
		s["taxonomy"] = r.Taxonomy
	}
	return s
}

func pct(n, d int) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(d))
}

// Markdown renders the summary; images lists the files written next to it (PNG ones are linked).
func (r *Report) Markdown(images map[string][]byte) string {
	var b strings.Builder
	r.mdSummary(&b)
	if len(r.Groups) > 0 {
		mdGroupTable(&b, fmt.Sprintf("Head, medium and tail classes (tail ≤ %d, medium ≤ %d training images)", r.TailMax, r.MediumMax), r.Groups, true)
		b.WriteString("A group's macro-F1 is the mean F1 of its labels; weighted by label count the groups give the overall macro-F1.\n\n")
	}
	if len(r.Bins) > 0 {
		mdGroupTable(&b, "F1 by class frequency", r.Bins, false)
		if _, ok := images[F1ByFreqPNG]; ok {
			fmt.Fprintf(&b, "![F1 by class frequency](%s)\n\n", F1ByFreqPNG)
		}
	}
	if r.Taxonomy != nil {
		r.mdTaxonomy(&b, images)
	}
	if len(r.TopConfusions) > 0 {
		r.mdConfusions(&b)
	}
	fmt.Fprintf(&b, "Per-class precision, recall and F1: [%s](%s).\n", PerClassCSV, PerClassCSV)
	return b.String()
}

// mdSummary writes the title, the headline metrics, scikit-learn's ill-defined-label warning and
// the accuracy at each rank.
func (r *Report) mdSummary(b *strings.Builder) {
	fmt.Fprintf(b, "# Evaluation of %s against %s\n\n", r.Pred, r.Truth)
	b.WriteString("| metric | value |\n|---|---|\n")
	fmt.Fprintf(b, "| macro-F1 (scikit-learn, %d labels) | **%.6f** |\n", r.Labels, r.MacroF1)
	fmt.Fprintf(b, "| accuracy | %.6f (%d / %d images) |\n", r.Accuracy, r.Correct, r.Images)
	if r.TopK > 0 {
		fmt.Fprintf(b, "| top-%d accuracy (%s) | %.6f |\n", r.TopK, r.TopKFile, r.TopKAccuracy)
	}
	b.WriteString("\n")
	if r.NoPred > 0 || r.NoTrue > 0 {
		fmt.Fprintf(b, "As scikit-learn warns: %d labels are never predicted (precision ill-defined) and %d labels "+
			"are predicted but never true (recall ill-defined); their F1 is 0 and they count in the mean.\n\n",
			r.NoPred, r.NoTrue)
	}
	if len(r.AtK) > 1 {
		b.WriteString("Accuracy within the first k ranks:\n\n| k |")
		for k := range r.AtK {
			fmt.Fprintf(b, " %d |", k+1)
		}
		b.WriteString("\n|---|" + strings.Repeat("---|", len(r.AtK)) + "\n| accuracy |")
		for _, a := range r.AtK {
			fmt.Fprintf(b, " %.4f |", a)
		}
		b.WriteString("\n\n")
	}
}

// mdGroupTable writes a section with one row per group of classes (named: with the group's name).
func mdGroupTable(b *strings.Builder, title string, gs []GroupScore, named bool) {
	fmt.Fprintf(b, "## %s\n\n", title)
	if named {
		b.WriteString("| group ")
	}
	b.WriteString("| train images | classes | test images | macro-F1 | accuracy |\n")
	if named {
		b.WriteString("|---")
	}
	b.WriteString("|---|---|---|---|---|\n")
	for _, g := range gs {
		if named {
			fmt.Fprintf(b, "| %s ", g.Name)
		}
		fmt.Fprintf(b, "| %s | %d | %d | %.4f | %.4f |\n", g.Range(), g.Labels, g.Support, g.MacroF1, g.Accuracy)
	}
	b.WriteString("\n")
}

// mdTaxonomy writes the genus- and family-level errors section.
func (r *Report) mdTaxonomy(b *strings.Builder, images map[string][]byte) {
	t := r.Taxonomy
	b.WriteString("## Errors at genus and family level\n\n")
	fmt.Fprintf(b, "- genus-level accuracy: %.4f; family-level accuracy: %.4f\n", t.GenusAccuracy, t.FamilyAccuracy)
	fmt.Fprintf(b, "- of %d errors, the predicted species is in the true genus for %d (%s)\n", t.Errors, t.SameGenus, pct(t.SameGenus, t.Errors))
	fmt.Fprintf(b, "- of %d errors, the predicted species is in the true family for %d (%s, same genus included); "+
		"in another family for %d (%s)\n\n", t.FamilyErrors, t.SameFamily, pct(t.SameFamily, t.FamilyErrors),
		t.FamilyErrors-t.SameFamily, pct(t.FamilyErrors-t.SameFamily, t.FamilyErrors))
	if _, ok := images[GenusConfusion]; ok {
		fmt.Fprintf(b, "![Genus confusion](%s)\n\n", GenusConfusion)
	}
}

// mdConfusions writes the most frequent (true, predicted) pairs, classes named where known.
func (r *Report) mdConfusions(b *strings.Builder) {
	names := map[int64]string{}
	for _, c := range r.Classes {
		names[c.Class] = c.Name
	}
	label := func(id int64) string {
		if n := names[id]; n != "" {
			return fmt.Sprintf("%d %s", id, n)
		}
		return strconv.FormatInt(id, 10)
	}
	b.WriteString("## Most frequent confusions\n\n| true class | predicted class | images |\n|---|---|---|\n")
	for _, c := range r.TopConfusions {
		fmt.Fprintf(b, "| %s | %s | %d |\n", label(c.True), label(c.Pred), c.Count)
	}
	b.WriteString("\n")
}
