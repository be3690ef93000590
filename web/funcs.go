package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/kilnci/kiln/registry"
)

// funcs are the helpers templates use. They take the API's Unix
// milliseconds.
var funcs = template.FuncMap{
	"when":     when,
	"ago":      ago,
	"span":     span,
	"short":    registry.Short,
	"orDash":   orDash,
	"join":     strings.Join,
	"msDur":    func(ms int64) string { return roundDur(time.Duration(ms) * time.Millisecond) },
	"triggers": triggers,
	"label":    label,
}

// when shows a timestamp as UTC.
func when(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago shows how long ago a timestamp was, coarsely.
func ago(ms int64) string {
	if ms == 0 {
		return "never"
	}
	d := time.Since(time.UnixMilli(ms))
	if d < 0 {
		return "in " + roundDur(-d)
	}
	if d < time.Second {
		return "just now"
	}
	return roundDur(d) + " ago"
}

// span shows the time between two timestamps; an open end is now.
func span(from, to int64) string {
	if from == 0 {
		return "-"
	}
	end := time.Now()
	if to != 0 {
		end = time.UnixMilli(to)
	}
	return roundDur(end.Sub(time.UnixMilli(from)))
}

func roundDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
