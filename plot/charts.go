package plot

import (
	"fmt"
	"image/color"
	"math"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Bar is one bar of a BarChart: its category label, height, and an optional note printed above it.
type Bar struct {
	Label string
	Value float64
	Note  string
}

// BarChart is a vertical bar chart over named categories.
type BarChart struct {
	Title, XLabel, YLabel string
	Bars                  []Bar
	// YMax fixes the top of the Y axis when positive (1 for scores); otherwise it fits the data.
	YMax float64
}

// BarsPNG draws c.
func BarsPNG(c BarChart) ([]byte, error) {
	if len(c.Bars) == 0 {
		return nil, fmt.Errorf("bar chart %q has no bars", c.Title)
	}
	p := gplot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	vals := make(plotter.Values, len(c.Bars))
	names := make([]string, len(c.Bars))
	var notes plotter.XYLabels
	top := 0.0
	for i, b := range c.Bars {
		v := b.Value
		if math.IsNaN(v) || math.IsInf(v, 0) {
			v = 0
		}
		vals[i], names[i] = v, b.Label
		top = math.Max(top, v)
		if b.Note != "" {
			notes.XYs = append(notes.XYs, plotter.XY{X: float64(i), Y: v})
			notes.Labels = append(notes.Labels, b.Note)
		}
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return nil, err
	}
	bars.Color = palette[0]
	bars.LineStyle.Width = 0
	p.Add(plotter.NewGrid(), bars)
	if len(notes.Labels) > 0 {
		lab, err := plotter.NewLabels(notes)
		if err != nil {
			return nil, err
		}
		for i := range lab.TextStyle {
			lab.TextStyle[i].XAlign = draw.XCenter
			lab.TextStyle[i].Font.Size = vg.Points(8)
		}
		lab.Offset = vg.Point{Y: vg.Points(3)}
		p.Add(lab)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(c.Bars))-0.4
	p.Y.Min = 0
	p.Y.Max = top * 1.12
	if c.YMax > 0 {
		p.Y.Max = c.YMax * 1.08
	}
	if p.Y.Max == 0 {
		p.Y.Max = 1
	}
	w := vg.Length(math.Max(6, 0.7*float64(len(c.Bars))+1.5)) * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, 4.5*vg.Inch), vgimg.UseDPI(dpi))
	p.Draw(draw.New(img))
	return encodePNG(img)
}

// Heatmap is a matrix of counts with named rows and columns; row 0 is drawn at the top.
type Heatmap struct {
	Title, XLabel, YLabel string
	Rows, Cols            []string
	Values                [][]float64 // [row][col]
}

type grid struct{ h *Heatmap }

func (g grid) Dims() (c, r int)   { return len(g.h.Cols), len(g.h.Rows) }
func (g grid) Z(c, r int) float64 { return g.h.Values[len(g.h.Rows)-1-r][c] }
func (g grid) X(c int) float64    { return float64(c) }
func (g grid) Y(r int) float64    { return float64(r) }

// whiteToBlue runs from white (0) to dark blue (max).
type whiteToBlue int

func (n whiteToBlue) Colors() []color.Color {
	out := make([]color.Color, int(n))
	for i := range out {
		t := float64(i) / float64(int(n)-1)
		out[i] = color.RGBA{
			R: uint8(255 - t*(255-8)),
			G: uint8(255 - t*(255-48)),
			B: uint8(255 - t*(255-107)),
			A: 255,
		}
	}
	return out
}

// HeatmapPNG draws h with each non-zero cell labelled by its value.
func HeatmapPNG(h Heatmap) ([]byte, error) {
	nr, nc := len(h.Rows), len(h.Cols)
	if nr == 0 || nc == 0 {
		return nil, fmt.Errorf("heat map %q is empty", h.Title)
	}
	if len(h.Values) != nr {
		return nil, fmt.Errorf("heat map %q: %d rows of values for %d row names", h.Title, len(h.Values), nr)
	}
	maxV := 0.0
	for i, row := range h.Values {
		if len(row) != nc {
			return nil, fmt.Errorf("heat map %q: row %d has %d values for %d columns", h.Title, i, len(row), nc)
		}
		for _, v := range row {
			maxV = math.Max(maxV, v)
		}
	}
	p := gplot.New()
	p.Title.Text = h.Title
	p.X.Label.Text = h.XLabel
	p.Y.Label.Text = h.YLabel
	hm := plotter.NewHeatMap(grid{&h}, whiteToBlue(64))
	hm.Min, hm.Max = 0, math.Max(maxV, 1)
	p.Add(hm)

	var dark, light plotter.XYLabels
	for r, row := range h.Values {
		for c, v := range row {
			if v == 0 {
				continue
			}
			xy := plotter.XY{X: float64(c), Y: float64(nr - 1 - r)}
			s := fmt.Sprintf("%g", v)
			if v > 0.55*hm.Max {
				light.XYs, light.Labels = append(light.XYs, xy), append(light.Labels, s)
			} else {
				dark.XYs, dark.Labels = append(dark.XYs, xy), append(dark.Labels, s)
			}
		}
	}
	for _, set := range []struct {
		l plotter.XYLabels
		c color.Color
	}{{dark, color.Black}, {light, color.White}} {
		if len(set.l.Labels) == 0 {
			continue
		}
		lab, err := plotter.NewLabels(set.l)
		if err != nil {
			return nil, err
		}
		for i := range lab.TextStyle {
			lab.TextStyle[i] = text.Style{Color: set.c, Font: lab.TextStyle[i].Font,
				XAlign: draw.XCenter, YAlign: draw.YCenter, Handler: lab.TextStyle[i].Handler}
			lab.TextStyle[i].Font.Size = vg.Points(7)
		}
		p.Add(lab)
	}
	rows := make([]string, nr)
	for i, name := range h.Rows {
		rows[nr-1-i] = name
	}
	p.NominalX(h.Cols...)
	p.NominalY(rows...)
	p.X.Tick.Label.Rotation = math.Pi / 2
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	p.X.Min, p.X.Max = -0.5, float64(nc)-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(nr)-0.5
	cell := 0.32 * vg.Inch
	w := vg.Length(nc)*cell + 2.8*vg.Inch
	ht := vg.Length(nr)*cell + 2.8*vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, ht), vgimg.UseDPI(dpi))
	p.Draw(draw.New(img))
	return encodePNG(img)
}
