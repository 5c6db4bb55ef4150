// Command chart draws bench/results.png from the summary compare.sh writes (a TSV with the
// columns scenario, proxy, rps, p99_ms, cpu_us): for every scenario, one bar per proxy for
// req/s (labelled with its ratio to nginx) and one for CPU µs per request. It uses only the
// standard library's image packages and x/image's built-in bitmap font, so drawing a chart
// adds no plotting library to the project; it is its own module, so not even that reaches the
// gateway's dependency graph.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// row is one scenario/proxy line of the summary.
type row struct {
	scenario, proxy string
	rps, p99, cpu   float64
}

func main() {
	in := flag.String("in", "", "summary TSV written by compare.sh")
	out := flag.String("out", "bench/results.png", "PNG to write")
	title := flag.String("title", "Weir load comparison", "chart title")
	flag.Parse()
	rows, err := read(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
	img := render(rows, *title)
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		fmt.Fprintln(os.Stderr, "chart: encode:", err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}

func read(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			continue // header
		}
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) != 5 {
			return nil, fmt.Errorf("%s:%d: want 5 tab-separated fields, got %d", path, line+1, len(fs))
		}
		r := row{scenario: fs[0], proxy: fs[1]}
		for i, dst := range []*float64{&r.rps, &r.p99, &r.cpu} {
			if *dst, err = strconv.ParseFloat(fs[2+i], 64); err != nil {
				return nil, fmt.Errorf("%s:%d: field %d: %w", path, line+1, 3+i, err)
			}
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no results", path)
	}
	return rows, nil
}

var (
	white  = color.RGBA{255, 255, 255, 255}
	black  = color.RGBA{30, 30, 30, 255}
	grey   = color.RGBA{120, 120, 120, 255}
	colors = map[string]color.RGBA{
		"nginx":   {0, 150, 57, 255},
		"haproxy": {30, 100, 200, 255},
		"ceiling": {150, 150, 150, 255},
		"weir":    {230, 120, 20, 255},
		// Weir on its plain route, beside a Weir-only route (the plugin scenario).
		"weir-plain": {245, 185, 120, 255},
	}
)

const (
	width  = 1100
	barH   = 16
	gap    = 4
	labelW = 170 // room for "scenario  proxy"
	panelW = (width - 3*20) / 2
)

// render draws two panels side by side: req/s (higher is better) and CPU µs per request (lower
// is better), one group of bars per scenario.
func render(rows []row, title string) image.Image {
	var scenarios []string
	seen := map[string]bool{}
	nginx := map[string]float64{}
	var maxRPS, maxCPU float64
	for _, r := range rows {
		if !seen[r.scenario] {
			seen[r.scenario] = true
			scenarios = append(scenarios, r.scenario)
		}
		if r.proxy == "nginx" {
			nginx[r.scenario] = r.rps
		}
		maxRPS = max(maxRPS, r.rps)
		maxCPU = max(maxCPU, r.cpu)
	}
	height := 70 + len(rows)*(barH+gap) + len(scenarios)*14 + 30
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)
	text(img, 20, 22, title, black)
	text(img, 20, 50, "req/s (median of rounds; ratio to nginx in brackets) - higher is better", grey)
	text(img, 40+panelW, 50, "proxy CPU us per request - lower is better", grey)

	y := 66
	for _, s := range scenarios {
		y += 14
		for _, r := range rows {
			if r.scenario != s {
				continue
			}
			c := colors[r.proxy]
			if c.A == 0 {
				c = black
			}
			label := fmt.Sprintf("%-8s %s", s, r.proxy)
			rl := fmt.Sprintf("%.0f", r.rps)
			if n := nginx[s]; n > 0 {
				rl += fmt.Sprintf(" (%.2f)", r.rps/n)
			}
			bar(img, 20, y, label, r.rps/maxRPS, rl, c)
			bar(img, 40+panelW, y, label, r.cpu/maxCPU, fmt.Sprintf("%.1f us", r.cpu), c)
			y += barH + gap
		}
	}
	return img
}

// bar draws one labelled horizontal bar whose length is frac of the panel's bar area.
func bar(img *image.RGBA, x, y int, label string, frac float64, value string, c color.RGBA) {
	text(img, x, y+barH-4, label, black)
	area := panelW - labelW - 110 // leave room for the value after the longest bar
	w := int(frac * float64(area))
	if w < 1 {
		w = 1
	}
	r := image.Rect(x+labelW, y, x+labelW+w, y+barH)
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
	text(img, x+labelW+w+6, y+barH-4, value, black)
}

func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	d := &font.Drawer{Dst: img, Src: &image.Uniform{c}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
