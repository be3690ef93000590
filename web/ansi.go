package web

import (
	"html"
	"slices"
	"strconv"
	"strings"
)

// ansi turns a log's bytes into HTML: text is escaped, SGR colour and
// style codes become spans with classes (the page's CSP allows no inline
// styles), and every other escape sequence is dropped. It keeps its state
// between calls, so a sequence or a colour split across chunks of a
// stream comes out right.
type ansi struct {
	fg, bg     string // class suffixes; "" is the default
	bold, dim  bool
	italic, ul bool
	open       bool   // a span is open in the output
	pending    []byte // an escape sequence cut off at the end of a chunk
}

// write converts one chunk.
func (a *ansi) write(p []byte) string {
	data := append(a.pending, p...)
	a.pending = nil
	var out strings.Builder
	text := 0
	flush := func(end int) {
		if end > text {
			out.WriteString(html.EscapeString(strings.ToValidUTF8(string(data[text:end]), "\uFFFD")))
		}
	}
	for i := 0; i < len(data); i++ {
		if data[i] != 0x1b {
			continue
		}
		flush(i)
		n, params, final, ok := escape(data[i:])
		if !ok {
			a.pending = append([]byte(nil), data[i:]...)
			text = len(data)
			break
		}
		if final == 'm' {
			a.sgr(params, &out)
		}
		i += n - 1
		text = i + 1
	}
	flush(len(data))
	return out.String()
}

// escape measures the escape sequence at the start of b: its length, the
// parameters and final byte of a CSI sequence; ok is false when b ends
// before the sequence does.
func escape(b []byte) (n int, params string, final byte, ok bool) {
	if len(b) < 2 {
		return 0, "", 0, false
	}
	switch b[1] {
	case '[':
		for i := 2; i < len(b); i++ {
			if b[i] >= 0x40 && b[i] <= 0x7e {
				return i + 1, string(b[2:i]), b[i], true
			}
			if b[i] < 0x20 {
				return 2, "", 0, true // cut off by a line's end: no sequence
			}
		}
		// A sequence that runs on past any real one is no sequence: its
		// ESC [ is dropped and the rest shown as text.
		return 2, "", 0, len(b) > 64
	case ']': // OSC, ended by BEL or ESC \
		for i := 2; i < len(b); i++ {
			if b[i] == 0x07 {
				return i + 1, "", 0, true
			}
			if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\' {
				return i + 2, "", 0, true
			}
			if b[i] == '\n' {
				return 2, "", 0, true // a title that never ended: show the rest
			}
		}
		return 2, "", 0, len(b) > 1024
	}
	return 2, "", 0, true
}

// sgr applies "Select Graphic Rendition" parameters and writes the span
// that shows the new state.
func (a *ansi) sgr(params string, out *strings.Builder) {
	codes := strings.Split(params, ";")
	for i := 0; i < len(codes); i++ {
		c, _ := strconv.Atoi(codes[i]) // "" is 0, a reset
		switch {
		case c == 0:
			a.fg, a.bg, a.bold, a.dim, a.italic, a.ul = "", "", false, false, false, false
		case c == 1:
			a.bold = true
		case c == 2:
			a.dim = true
		case c == 3:
			a.italic = true
		case c == 4:
			a.ul = true
		case c == 22:
			a.bold, a.dim = false, false
		case c == 23:
			a.italic = false
		case c == 24:
			a.ul = false
		case c >= 30 && c <= 37:
			a.fg = strconv.Itoa(c - 30)
		case c >= 90 && c <= 97:
			a.fg = strconv.Itoa(c - 90 + 8)
		case c == 39:
			a.fg = ""
		case c >= 40 && c <= 47:
			a.bg = strconv.Itoa(c - 40)
		case c >= 100 && c <= 107:
			a.bg = strconv.Itoa(c - 100 + 8)
		case c == 49:
			a.bg = ""
		case c == 38 || c == 48:
			// 256 colours (5;n) and true colour (2;r;g;b): map the first to
			// the 16 classes, skip the second.
			if i+2 < len(codes) && codes[i+1] == "5" {
				if n, err := strconv.Atoi(codes[i+2]); err == nil && n < 16 {
					if c == 38 {
						a.fg = strconv.Itoa(n)
					} else {
						a.bg = strconv.Itoa(n)
					}
				}
				i += 2
			} else if i+1 < len(codes) && codes[i+1] == "2" {
				i += 4
			}
		}
	}
	if a.open {
		out.WriteString("</span>")
		a.open = false
	}
	var cls []string
	if a.fg != "" {
		cls = append(cls, "fg"+a.fg)
	}
	if a.bg != "" {
		cls = append(cls, "bg"+a.bg)
	}
	for on, name := range map[string]bool{"b": a.bold, "d": a.dim, "i": a.italic, "u": a.ul} {
		if name {
			cls = append(cls, on)
		}
	}
	if len(cls) > 0 {
		slices.Sort(cls)
		out.WriteString(`<span class="` + strings.Join(cls, " ") + `">`)
		a.open = true
	}
}

// close ends the output at the end of a log: bytes held back as the
// start of an escape sequence that never ended are shown as text, and an
// open span is closed.
func (a *ansi) close() string {
	var out strings.Builder
	if len(a.pending) > 0 {
		out.WriteString(html.EscapeString(strings.ToValidUTF8(string(a.pending[1:]), "\uFFFD")))
		a.pending = nil
	}
	if a.open {
		a.open = false
		out.WriteString("</span>")
	}
	return out.String()
}
