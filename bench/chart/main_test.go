package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name, in string
		wantRows int
		wantErr  bool
	}{
		{"two rows", "scenario\tproxy\trps\tp99_ms\tcpu_us\nsmall\tnginx\t100\t1.5\t17\nsmall\tweir\t80\t2\t26\n", 2, false},
		{"short line", "h\nsmall\tnginx\t100\n", 0, true},
		{"not a number", "h\nsmall\tnginx\tfast\t1\t1\n", 0, true},
		{"empty", "h\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s.tsv")
			if err := os.WriteFile(p, []byte(tt.in), 0o644); err != nil {
				t.Fatal(err)
			}
			rows, err := read(p)
			if (err != nil) != tt.wantErr || len(rows) != tt.wantRows {
				t.Errorf("read: got %d rows, err %v; want %d rows, error %v", len(rows), err, tt.wantRows, tt.wantErr)
			}
		})
	}
}

func TestRender(t *testing.T) {
	rows := []row{{"small", "nginx", 100, 1, 17}, {"small", "weir", 80, 2, 26}, {"plugin", "weir", 60, 3, 30}}
	img := render(rows, "t")
	if b := img.Bounds(); b.Dx() != width || b.Dy() < 100 {
		t.Errorf("image bounds %v, want %d wide and at least 100 high", b, width)
	}
}

// FuzzRead feeds arbitrary summaries to the parser: it must return rows or an error, never
// panic, and render must draw whatever it accepted.
func FuzzRead(f *testing.F) {
	f.Add("scenario\tproxy\trps\tp99_ms\tcpu_us\nsmall\tnginx\t100\t1.5\t17\n")
	f.Add("h\nsmall\tweir\t0\t0\t0\n")
	f.Add("h\nx\ty\tNaN\t-1\t1e308\n")
	f.Fuzz(func(t *testing.T, in string) {
		p := filepath.Join(t.TempDir(), "s.tsv")
		if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		rows, err := read(p)
		if err == nil {
			render(rows, "fuzz")
		}
	})
}
