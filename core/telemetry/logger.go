package telemetry

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// Log formats (log.format in the config).
const (
	FormatAuto    = "auto"    // console on a terminal, JSON otherwise
	FormatJSON    = "json"    // one JSON object per line, for log collectors
	FormatConsole = "console" // zerolog's human-readable console writer
)

// IsTerminal reports whether f is a terminal (a character device), where people read the log.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// consoleWriter formats JSON lines for people: in colour on a terminal, without the parts
// named in exclude (zerolog.LevelFieldName, zerolog.TimestampFieldName).
func consoleWriter(w io.Writer, colour bool, exclude ...string) io.Writer {
	return zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !colour, PartsExclude: exclude}
}

// ProcessLog is the output of the gateway's own logger. It writes JSON to its writer until
// Configure applies the config's log settings, which are only known once the config has been
// loaded by an engine that already logs.
type ProcessLog struct {
	out io.Writer
	cur atomic.Pointer[io.Writer]
}

// NewProcessLog returns a ProcessLog writing JSON to w.
func NewProcessLog(w io.Writer) *ProcessLog {
	p := &ProcessLog{out: w}
	p.cur.Store(&w)
	return p
}

// Write writes one log event (zerolog writes each in one call, as the console writer needs).
func (p *ProcessLog) Write(b []byte) (int, error) {
	return (*p.cur.Load()).Write(b)
}

// Configure sets the least severe level logged ("debug", "info", "warn" or "error"; "" is info)
// for every logger of the process, and the format (FormatAuto, FormatJSON or FormatConsole; ""
// is FormatAuto). Auto is console when the output is a terminal.
func (p *ProcessLog) Configure(level, format string) error {
	if level == "" {
		level = "info"
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || lvl < zerolog.DebugLevel || lvl > zerolog.ErrorLevel {
		return fmt.Errorf("log level %q is not one of debug, info, warn, error", level)
	}
	w := p.out
	f, _ := w.(*os.File)
	switch format {
	case "", FormatAuto:
		if IsTerminal(f) {
			w = consoleWriter(w, true)
		}
	case FormatConsole:
		w = consoleWriter(w, IsTerminal(f))
	case FormatJSON:
	default:
		return fmt.Errorf("log format %q is not one of auto, json, console", format)
	}
	// Access-log lines have no level, so the level never hides them.
	zerolog.SetGlobalLevel(lvl)
	p.cur.Store(&w)
	return nil
}
