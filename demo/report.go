package demo

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"protoherb/atomicfile"
	"protoherb/eval"
	"protoherb/plot"
	"protoherb/synth"
)

// short labels for the charts.
var shortName = map[string]string{"random": "random", "run": "protoherb run"}

func group(r *eval.Report, name string) (eval.GroupScore, bool) {
	for _, g := range r.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return eval.GroupScore{}, false
}

// writeReport writes report.md and its charts into the output folder.
func writeReport(res *Result, cfg Config, gen *synth.Result) error {
	dir := filepath.Dir(res.Report)
	var overall []plot.Bar
	var tail []plot.Bar
	for _, m := range res.Methods {
		overall = append(overall, plot.Bar{Label: shortName[m.Name], Value: m.Report.MacroF1, Note: fmt.Sprintf("%.3f", m.Report.MacroF1)})
		if g, ok := group(m.Report, "tail"); ok {
			tail = append(tail, plot.Bar{Label: shortName[m.Name], Value: g.MacroF1, Note: fmt.Sprintf("%.3f", g.MacroF1)})
		}
	}
	charts := []struct {
		file  string
		chart plot.BarChart
	}{
		{"macro_f1.png", plot.BarChart{Title: "Test macro-F1 by method", YLabel: "macro-F1", Bars: overall, YMax: 1}},
		{"tail_f1.png", plot.BarChart{Title: "Macro-F1 on tail species (fewest training images)", YLabel: "macro-F1", Bars: tail, YMax: 1}},
	}
	for _, c := range charts {
		if len(c.chart.Bars) == 0 {
			continue
		}
		png, err := plot.BarsPNG(c.chart)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, c.file), func(w io.Writer) error {
			_, err := w.Write(png)
			return err
		}); err != nil {
			return err
		}
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# protoherb demo report\n\n")
	fmt.Fprintf(&b, "The whole pipeline on a generated herbarium, in %s on this machine (seed %d).\n\n", res.Elapsed.Round(1e9), cfg.Seed)
	fmt.Fprintf(&b, "- Data: %d species (%d genera, %d families), %d training and %d test sheets, Herbarium 2020 layout in `%s`.\n",
		len(gen.Categories), cfg.Genera, cfg.Families, gen.TrainImages, gen.TestImages, rel(dir, gen.Root))
	c := res.Config
	fmt.Fprintf(&b, "- `protoherb run` within %s (`%s`, every choice in `%s`): %s at %d px (resize %s, TTA %s), %d pretraining steps on all species",
		c.Budget, rel(dir, res.Run), rel(dir, filepath.Join(res.Run, "config.yaml")), c.Backbone, c.ImageSize, c.Resize, c.TTA, c.PretrainSteps)
	if c.TrainSteps > 0 {
		fmt.Fprintf(&b, ", then %d episodes of %d-way %d-shot %d-query", c.TrainSteps, c.Way, c.Shot, c.Query)
	}
	if c.Prototypes != nil {
		fmt.Fprintf(&b, "; prototype build %q, chosen on held-out training images", c.Prototypes.Name)
	}
	fmt.Fprintf(&b, ".\n\n")
	fmt.Fprintf(&b, "| method | macro-F1 | accuracy | top-5 | F1 head | F1 medium | F1 tail |\n|---|---|---|---|---|---|---|\n")
	for _, m := range res.Methods {
		cell := func(name string) string {
			if g, ok := group(m.Report, name); ok && g.Labels > 0 {
				return fmt.Sprintf("%.3f", g.MacroF1)
			}
			return "–"
		}
		fmt.Fprintf(&b, "| %s | **%.3f** | %.3f | %.3f | %s | %s | %s |\n", m.Name, m.Report.MacroF1, m.Report.Accuracy,
			m.Report.TopKAccuracy, cell("head"), cell("medium"), cell("tail"))
	}
	if len(res.Methods) > 0 && len(res.Methods[0].Report.Groups) > 0 {
		var parts []string
		for _, g := range res.Methods[0].Report.Groups {
			parts = append(parts, fmt.Sprintf("%s = %s", g.Name, g.Range()))
		}
		fmt.Fprintf(&b, "\nGroups by training images per species (scaled to this small herbarium): %s. Macro-F1 is scikit-learn's `f1_score(average=\"macro\")`.\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, "\n")
	for _, m := range res.Methods {
		fmt.Fprintf(&b, "- **%s**: %s. Files: `%s/` (submission.csv, topk.csv, report/).\n", m.Name, m.Note, rel(dir, m.Dir))
	}
	fmt.Fprintf(&b, "\n![macro-F1 by method](macro_f1.png)\n\n![tail macro-F1](tail_f1.png)\n\n")
	fmt.Fprintf(&b, "Training curves: `%s`.\n\n", rel(dir, filepath.Join(res.Model, "curves.png")))
	fmt.Fprintf(&b, "## Next\n\n```sh\n%s\n```\n", strings.Join(NextCommands("protoherb", res), "\n"))
	return atomicfile.WriteFile(res.Report, func(w io.Writer) error {
		_, err := w.Write(b.Bytes())
		return err
	})
}

// NextCommands are the commands a user might try after the demo, run as bin.
func NextCommands(bin string, res *Result) []string {
	return []string{
		fmt.Sprintf(bin+" serve --model %s --prototypes %s    # then open http://127.0.0.1:8080", res.Model, res.Prototypes),
		fmt.Sprintf(bin+" fewshot --model %s --data %s --split train --way 5 --shot 1,5", res.Model, filepath.Join(res.Data, "nybg2020")),
		fmt.Sprintf(bin+" evaluate --pred %s --truth %s --data %s --report /tmp/eval",
			filepath.Join(res.Run, "submission.csv"), filepath.Join(res.Data, "solution.csv"), filepath.Join(res.Data, "nybg2020")),
		fmt.Sprintf(bin+" run --config %s --out again    # the same run again", filepath.Join(res.Run, "config.yaml")),
		fmt.Sprintf(bin+" plot %s", res.Model),
	}
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}
