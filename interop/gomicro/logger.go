package main

import (
	"fmt"
	"log"

	"go-micro.dev/v4/logger"
)

// stderrLogger replaces go-micro's default logger, which prints with fmt.Printf to
// stdout whatever its Out option says (go-micro.dev/v4@v4.9.0/logger/default.go,
// Log and Logf) and would mix its lines into the peer's JSON output.
type stderrLogger struct {
	opts   logger.Options
	fields map[string]interface{}
}

func installLogger(level logger.Level) {
	l := &stderrLogger{opts: logger.Options{Level: level}}
	logger.DefaultLogger = l
	logger.DefaultHelper = logger.NewHelper(l)
}

func (l *stderrLogger) Init(opts ...logger.Option) error {
	for _, o := range opts {
		o(&l.opts)
	}
	return nil
}

func (l *stderrLogger) Options() logger.Options { return l.opts }

func (l *stderrLogger) Fields(fields map[string]interface{}) logger.Logger {
	f := make(map[string]interface{}, len(l.fields)+len(fields))
	for k, v := range l.fields {
		f[k] = v
	}
	for k, v := range fields {
		f[k] = v
	}
	return &stderrLogger{opts: l.opts, fields: f}
}

func (l *stderrLogger) Log(level logger.Level, v ...interface{}) {
	if l.opts.Level.Enabled(level) {
		log.Printf("go-micro %s: %s", level, fmt.Sprint(v...))
	}
}

func (l *stderrLogger) Logf(level logger.Level, format string, v ...interface{}) {
	if l.opts.Level.Enabled(level) {
		log.Printf("go-micro %s: %s", level, fmt.Sprintf(format, v...))
	}
}

func (l *stderrLogger) String() string { return "stderr" }
