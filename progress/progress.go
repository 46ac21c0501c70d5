// Package progress draws the progress bar every long loop in protoherb shows on standard error.
//
// It wraps github.com/schollz/progressbar (chosen for its small API, throttled redraws and ETA) so that
// every command looks the same, and so that a bar can be switched off for tests and quiet runs.
package progress

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Bar is one progress bar. A nil *Bar is valid and draws nothing, so callers need no checks.
//
// The rate and the time left are the bar's own (window, in rate.go): progressbar's are the count over
// the time since the bar started until its first half-second sample, absurd after one quick item.
type Bar struct {
	pb    *progressbar.ProgressBar
	clock func() time.Time

	mu          sync.Mutex
	desc, unit  string
	done, total int64
	win         *window
}

// Options configure a bar.
type Options struct {
	// Writer receives the bar; nil means os.Stderr when it is a terminal, and no bar otherwise.
	Writer io.Writer
	// Quiet disables drawing.
	Quiet bool
	// Unit names what is counted ("img", "step"); it is shown in the rate.
	Unit string
	// clock replaces time.Now (tests).
	clock func() time.Time
}

// New starts a bar that counts to total (-1 for unknown) with a short description.
func New(total int64, desc string, opt Options) *Bar {
	if opt.Quiet {
		return nil
	}
	w := opt.Writer
	if w == nil {
		// A bar redraws its line with carriage returns: on standard error that is not a terminal
		// (a log file, CI) it would only fill the log, so it is left out there.
		if !term.IsTerminal(int(os.Stderr.Fd())) {
			return nil
		}
		w = os.Stderr
	}
	unit := opt.Unit
	if unit == "" {
		unit = "it"
	}
	clock := opt.clock
	if clock == nil {
		clock = time.Now
	}
	pb := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(w, "\n") }),
	)
	return &Bar{pb: pb, clock: clock, desc: desc, unit: unit, total: total, win: newWindow(clock())}
}

// Add advances the bar by n.
func (b *Bar) Add(n int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.done += int64(n)
	b.win.add(b.clock(), b.done)
	b.pb.Describe(b.line())
	b.mu.Unlock()
	_ = b.pb.Add(n)
}

// Describe replaces the description, e.g. with the current loss.
func (b *Bar) Describe(desc string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.desc = desc
	b.pb.Describe(b.line())
}

// line is the description followed by the rate and the time left, once the window can tell them.
func (b *Bar) line() string {
	st := b.win.status(b.unit, b.done, b.total)
	if st == "" {
		return b.desc
	}
	return b.desc + " (" + st + ")"
}

// Finish completes the bar.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	_ = b.pb.Finish()
}

// Abandon ends the line of an unfinished bar (e.g. when the loop fails), so that a following error
// message starts on a line of its own.
func (b *Bar) Abandon() {
	if b == nil {
		return
	}
	_ = b.pb.Exit()
}
