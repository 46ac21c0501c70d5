// Package plot draws the PNG charts protoherb writes: a run's training curves from its metrics.jsonl,
// and the bar charts and heat maps of an evaluation report. Every function renders in memory and
// returns PNG bytes, or writes the file atomically, so a failed draw never leaves a partial image.
package plot

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"protoherb/atomicfile"
	"protoherb/metrics"
)

const dpi = 110

// Curves reads a run's metrics.jsonl and writes its loss and accuracy curves to outPNG.
func Curves(metricsJSONL, outPNG string) error {
	recs, err := metrics.ReadFile(metricsJSONL)
	if err != nil {
		return err
	}
	png, err := CurvesPNG(recs)
	if err != nil {
		return fmt.Errorf("%s: %w", metricsJSONL, err)
	}
	return atomicfile.WriteFile(outPNG, func(w io.Writer) error {
		_, err := w.Write(png)
		return err
	})
}

// CurvesPNG draws two panels, loss against step and accuracy against step, with one line per phase
// ("train", "val", ...). Records without "loss" or "acc" are left out of that panel; where "acc_ci95"
// is present the accuracy line gets a shaded 95% confidence band. A phase with many noisy points is
// drawn faintly with a bold running mean over it. Non-finite values are skipped.
func CurvesPNG(recs []metrics.Record) ([]byte, error) {
	if len(recs) == 0 {
		return nil, fmt.Errorf("no metrics records to plot")
	}
	phases := phaseOrder(recs)
	loss := gplot.New()
	loss.Title.Text = "Loss"
	loss.X.Label.Text = "step"
	loss.Y.Label.Text = "loss"
	acc := gplot.New()
	acc.Title.Text = "Accuracy"
	acc.X.Label.Text = "step"
	acc.Y.Label.Text = "accuracy"
	any := false
	for i, ph := range phases {
		c := phaseColor(ph, i)
		for _, panel := range []struct {
			p   *gplot.Plot
			key string
		}{{loss, "loss"}, {acc, "acc"}} {
			pts, ci := series(recs, ph, panel.key)
			if len(pts) == 0 {
				continue
			}
			any = true
			if err := addSeries(panel.p, ph, pts, ci, c); err != nil {
				return nil, err
			}
		}
	}
	if !any {
		return nil, fmt.Errorf("no record has a loss or acc value")
	}
	for _, p := range []*gplot.Plot{loss, acc} {
		p.Add(plotter.NewGrid())
		// Loss falls and accuracy rises: keep the legend off the curves' usual path.
		p.Legend.Top = p == loss
		p.Legend.Padding = vg.Points(4)
	}
	img := vgimg.NewWith(vgimg.UseWH(9*vg.Inch, 4*vg.Inch), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(14), PadTop: vg.Points(6),
		PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(10)}
	plots := [][]*gplot.Plot{{loss, acc}}
	canvases := gplot.Align(plots, tiles, dc)
	loss.Draw(canvases[0][0])
	acc.Draw(canvases[0][1])
	return encodePNG(img)
}

// phaseOrder lists the phases, train first, val second, then the rest by name.
func phaseOrder(recs []metrics.Record) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range recs {
		if !seen[r.Phase] {
			seen[r.Phase] = true
			out = append(out, r.Phase)
		}
	}
	rank := func(p string) int {
		switch p {
		case "train":
			return 0
		case "val":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(out, func(a, b string) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return out
}

var palette = []color.RGBA{
	{31, 119, 180, 255}, // blue
	{255, 127, 14, 255}, // orange
	{44, 160, 44, 255},  // green
	{214, 39, 40, 255},  // red
	{148, 103, 189, 255},
	{140, 86, 75, 255},
}

func phaseColor(_ string, i int) color.RGBA { return palette[i%len(palette)] }

// series returns the finite (step, key) points of one phase sorted by step, and the matching
// "<key>_ci95" half-widths (nil when no record has one).
func series(recs []metrics.Record, phase, key string) (plotter.XYs, []float64) {
	var pts plotter.XYs
	var ci []float64
	hasCI := false
	for _, r := range recs {
		if r.Phase != phase {
			continue
		}
		v, ok := r.Values[key]
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		pts = append(pts, plotter.XY{X: float64(r.Step), Y: v})
		h, ok := r.Values[key+"_ci95"]
		if ok && !math.IsNaN(h) && !math.IsInf(h, 0) {
			hasCI = true
		} else {
			h = 0
		}
		ci = append(ci, h)
	}
	idx := make([]int, len(pts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(pts[a].X, pts[b].X) })
	sp, sc := make(plotter.XYs, len(pts)), make([]float64, len(pts))
	for i, j := range idx {
		sp[i], sc[i] = pts[j], ci[j]
	}
	if !hasCI {
		sc = nil
	}
	return sp, sc
}

// smoothAbove is the number of points above which a series is drawn with a running mean.
const smoothAbove = 60

func addSeries(p *gplot.Plot, name string, pts plotter.XYs, ci []float64, c color.RGBA) error {
	if ci != nil {
		band := make(plotter.XYs, 0, 2*len(pts))
		for i, pt := range pts {
			band = append(band, plotter.XY{X: pt.X, Y: pt.Y - ci[i]})
		}
		for i := len(pts) - 1; i >= 0; i-- {
			band = append(band, plotter.XY{X: pts[i].X, Y: pts[i].Y + ci[i]})
		}
		poly, err := plotter.NewPolygon(band)
		if err != nil {
			return err
		}
		poly.Color = color.NRGBA{c.R, c.G, c.B, 60}
		poly.LineStyle.Width = 0
		p.Add(poly)
	}
	line, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	line.Color = c
	line.Width = vg.Points(1.5)
	if len(pts) <= smoothAbove {
		p.Add(line)
		if len(pts) <= 30 {
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return err
			}
			sc.Color = c
			sc.Radius = vg.Points(2)
			p.Add(sc)
		}
		p.Legend.Add(name, line)
		return nil
	}
	line.Color = color.NRGBA{c.R, c.G, c.B, 60}
	line.Width = vg.Points(0.7)
	mean, err := plotter.NewLine(runningMean(pts, len(pts)/smoothAbove*2+1))
	if err != nil {
		return err
	}
	mean.Color = c
	mean.Width = vg.Points(2)
	p.Add(line, mean)
	p.Legend.Add(name+" (running mean)", mean)
	return nil
}

// runningMean averages each point over a centred window of about window points (shorter at the
// ends), so the smoothed curve does not lag behind the raw one.
func runningMean(pts plotter.XYs, window int) plotter.XYs {
	prefix := make([]float64, len(pts)+1)
	for i, pt := range pts {
		prefix[i+1] = prefix[i] + pt.Y
	}
	half := window / 2
	out := make(plotter.XYs, len(pts))
	for i, pt := range pts {
		lo, hi := max(0, i-half), min(len(pts), i+half+1)
		out[i] = plotter.XY{X: pt.X, Y: (prefix[hi] - prefix[lo]) / float64(hi-lo)}
	}
	return out
}

func encodePNG(img *vgimg.Canvas) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	return buf.Bytes(), nil
}
