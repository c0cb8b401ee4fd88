package loadtest

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// series is one line of a plot: x, and min/median/max of y over rounds.
type series struct {
	Name string
	X    []float64
	Y    []stats
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// linePlot draws each series' medians as a line with points and its min-max range as
// error bars, and saves it (SVG or PNG by path's extension).
func linePlot(path, title, xlabel, ylabel string, logX bool, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Y.Tick.Marker = intTicks{}
	if logX {
		p.X.Scale = plot.LogScale{}
	}
	if len(ss) > 0 { // ticks at the measured points, 10k and 1M rather than 1e+04
		var ticks []plot.Tick
		for _, x := range ss[0].X {
			ticks = append(ticks, plot.Tick{Value: x, Label: countLabel(x)})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), -vg.Points(12)
	p.Add(plotter.NewGrid())
	for i, s := range ss {
		pts := make(plotter.XYs, len(s.X))
		errs := make(plotter.YErrors, len(s.X))
		for k := range s.X {
			pts[k] = plotter.XY{X: s.X[k], Y: s.Y[k].Med}
			errs[k].Low, errs[k].High = s.Y[k].Med-s.Y[k].Min, s.Y[k].Max-s.Y[k].Med
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		c := palette[i%len(palette)]
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		bars, err := plotter.NewYErrorBars(struct {
			plotter.XYer
			plotter.YErrorer
		}{pts, errs})
		if err != nil {
			return err
		}
		bars.Color = c
		p.Add(line, points, bars)
		p.Legend.Add(s.Name, line, points)
		if max := maxY(s); max*1.35 > p.Y.Max {
			p.Y.Max = max * 1.35 // room for the legend above the lines
		}
	}
	return save(p, 7*vg.Inch, 4*vg.Inch, path)
}

// countLabel writes 10000 as 10k, 250000 as 250k and 1000000 as 1M.
func countLabel(x float64) string {
	switch {
	case x >= 1e6 && math.Mod(x, 1e5) == 0:
		return strconv.FormatFloat(x/1e6, 'f', -1, 64) + "M"
	case x >= 1e4 && math.Mod(x, 1e3) == 0:
		return fmt.Sprintf("%.0fk", x/1e3)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}

func maxY(s series) float64 {
	m := 0.0
	for _, y := range s.Y {
		m = math.Max(m, y.Max)
	}
	return m
}

// latencyPlot draws the cumulative distribution of event-to-queryable latency, one
// line per load level.
func latencyPlot(path string, phases []phase) error {
	p := plot.New()
	p.Title.Text = "Event-to-queryable latency (device send -> row visible in ClickHouse)"
	p.X.Label.Text = "latency (ms)"
	p.Y.Label.Text = "fraction of probes at or below"
	p.Y.Min, p.Y.Max = 0, 1
	p.X.Min = 0
	p.X.Tick.Marker = intTicks{}
	p.Legend.Top, p.Legend.Left = false, false // a distribution's lower right is empty
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(10), vg.Points(10)
	p.Add(plotter.NewGrid())
	for i, ph := range phases {
		if len(ph.Latencies) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(ph.Latencies))
		for k, l := range ph.Latencies {
			pts[k] = plotter.XY{X: float64(l) / float64(time.Millisecond), Y: float64(k+1) / float64(len(ph.Latencies))}
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = palette[i%len(palette)]
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("%s (p99 %d ms)", ph.Name, quantile(ph.Latencies, 0.99).Milliseconds()), line)
	}
	return save(p, 7*vg.Inch, 4*vg.Inch, path)
}

// ratioPlot draws each stage's median ratio to its ceiling as a bar with its value, and
// a line at 1 (as fast as the ceiling).
func ratioPlot(path string, res []pairResult) error {
	p := plot.New()
	p.Title.Text = "Each stage beside its raw ceiling (median ratio, same run)"
	p.Y.Label.Text = "stage rate / ceiling rate"
	var vals plotter.Values
	var names []string
	for _, r := range res {
		rs := r.ratios()
		if len(rs) == 0 {
			continue
		}
		vals = append(vals, summarize(rs).Med)
		names = append(names, r.pair.Label)
	}
	if len(vals) == 0 {
		return fmt.Errorf("no ratios to plot")
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(26))
	if err != nil {
		return err
	}
	bars.Color = palette[0]
	var pts plotter.XYs
	var labels []string
	top := 1.0
	for i, v := range vals {
		pts = append(pts, plotter.XY{X: float64(i), Y: v})
		labels = append(labels, fmt.Sprintf("%.2f", v))
		top = math.Max(top, v)
	}
	vl, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: labels})
	if err != nil {
		return err
	}
	for i := range vl.TextStyle {
		vl.TextStyle[i].XAlign = draw.XCenter
		vl.Offset.Y = vg.Points(4)
	}
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Color = palette[1]
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(plotter.NewGrid(), bars, vl, one)
	p.Legend.Add("ceiling (ratio 1)", one)
	p.Legend.Top, p.Legend.YOffs = true, -vg.Points(12)
	p.Y.Min, p.Y.Max = 0, top*1.2
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = math.Pi / 6 // a dozen stage names side by side
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = draw.XRight, draw.YCenter
	return save(p, 10*vg.Inch, 5*vg.Inch, path)
}

// save writes the plot to path (SVG) and beside it as PNG, the form to look at it in.
func save(p *plot.Plot, w, h vg.Length, path string) error {
	if err := p.Save(w, h, path); err != nil {
		return err
	}
	return p.Save(w, h, strings.TrimSuffix(path, filepath.Ext(path))+".png")
}

// intTicks are gonum's default ticks labelled without decimals (250k, not 250000.00).
type intTicks struct{}

func (intTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = countLabel(ts[i].Value)
		}
	}
	return ts
}
