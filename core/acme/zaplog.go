package acme

import (
	"strings"

	"github.com/rs/zerolog"
	"go.uber.org/zap/zapcore"
)

// zapCore sends certmagic's zap logs to the gateway's zerolog logger, so they are JSON lines
// in the same stream as every other log rather than certmagic's console output.
type zapCore struct {
	log    zerolog.Logger
	fields []zapcore.Field // from With, written before each entry's own
}

func (c zapCore) Enabled(l zapcore.Level) bool { return level(l) >= c.log.GetLevel() }

func (c zapCore) With(fs []zapcore.Field) zapcore.Core {
	return zapCore{log: c.log, fields: append(c.fields[:len(c.fields):len(c.fields)], fs...)}
}

func (c zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c zapCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	lv := level(e.Level)
	if lv == zerolog.ErrorLevel && strings.HasSuffix(e.LoggerName, "acme_client") {
		// The protocol client's errors ("challenge failed", "validating authorization") are
		// logged again, with the name, CA and retry schedule, by the obtain or renew step
		// that called it; one error line per failed attempt is enough.
		lv = zerolog.DebugLevel
	}
	ev := c.log.WithLevel(lv)
	if ev == nil {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	if e.LoggerName != "" {
		ev = ev.Str("logger", strings.TrimPrefix(e.LoggerName, "."))
	}
	ev.Fields(enc.Fields).Msg(e.Message)
	return nil
}

func (zapCore) Sync() error { return nil }

func level(l zapcore.Level) zerolog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return zerolog.DebugLevel
	case l == zapcore.InfoLevel:
		return zerolog.InfoLevel
	case l == zapcore.WarnLevel:
		return zerolog.WarnLevel
	case l == zapcore.ErrorLevel:
		return zerolog.ErrorLevel
	default: // DPanic, Panic, Fatal: certmagic uses none; never exit the gateway for a log line
		return zerolog.ErrorLevel
	}
}
