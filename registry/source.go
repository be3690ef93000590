package registry

import (
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"unicode"
)

// Source is where a pipeline's repository lives.
type Source struct {
	// Given is the source as the user wrote it; the registry stores this.
	Given string
	// Git is a plain URL that git understands (`git ls-remote`, `git
	// clone`), and that jobs check out from.
	Git string
}

// gitSchemes are the URL schemes a source may use. Others (ext::, fd::,
// or go-getter's s3, gcs, http archives) are refused: only git fetches.
var gitSchemes = map[string]bool{
	"https": true, "http": true, "ssh": true, "git": true, "file": true,
}

// ParseSource checks a source and derives its plain git URL. It accepts
//
//   - URLs of the schemes https, http, ssh, git and file
//     ("file:///srv/repos/app"), optionally with go-getter's "git::"
//     prefix, which is dropped;
//   - an absolute local path ("/srv/repos/app"), taken as a file:// URL.
//
// It refuses relative paths (the master's working folder is nobody's
// business), scp-like addresses ("git@host:app.git": write
// "ssh://git@host/app.git"), other go-getter forced getters, go-getter's
// "//subfolder" and "?ref=" syntax (Kiln has --dir and refs for those),
// and anything with control characters or spaces.
func ParseSource(s string) (Source, error) {
	if err := checkSourceChars(s); err != nil {
		return Source{}, err
	}
	raw := strings.TrimPrefix(s, "git::")
	if strings.HasPrefix(raw, "/") {
		return Source{Given: s, Git: fileURL(raw)}, nil
	}
	if i := strings.Index(raw, "::"); i >= 0 && !strings.Contains(raw[:i], "/") {
		return Source{}, errorf(ErrBadSource,
			"source %q: only git sources are supported, not %q", s, raw[:i])
	}
	u, err := parseSourceURL(s, raw)
	if err != nil {
		return Source{}, err
	}
	if u.Scheme == "file" {
		return Source{Given: s, Git: fileURL(u.Path)}, nil
	}
	// The scheme as url.Parse wrote it, lower-case, so that what git gets
	// is what was checked.
	return Source{Given: s, Git: u.Scheme + raw[strings.Index(raw, "://"):]}, nil
}

func checkSourceChars(s string) error {
	if s == "" {
		return errorf(ErrBadSource, "no source: give a git URL such as "+
			"https://host/repo.git or file:///path/to/repo")
	}
	if strings.HasPrefix(s, "-") {
		return errorf(ErrBadSource, "source %q must not start with '-'", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return errorf(ErrBadSource, "source %q contains a space or control character", s)
		}
	}
	return nil
}

// parseSourceURL parses raw (s without "git::") and refuses what git or
// Kiln would not take.
func parseSourceURL(s, raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		if at, colon := strings.Index(raw, "@"), strings.Index(raw, ":"); at >= 0 && colon > at {
			return nil, errorf(ErrBadSource, "source %q: write scp-like addresses as "+
				"ssh://%s/%s", s, raw[:colon], raw[colon+1:])
		}
		return nil, errorf(ErrBadSource, "source %q is neither a URL nor an absolute path", s)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errorf(ErrBadSource, "source %q is not a valid URL: %w", s, err)
	}
	if !gitSchemes[u.Scheme] {
		return nil, errorf(ErrBadSource, "source %q: scheme %q is not one of https, http, "+
			"ssh, git, file", s, u.Scheme)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, errorf(ErrBadSource, "source %q must not carry a query or fragment: "+
			"give the ref and folder separately", s)
	}
	if strings.Contains(u.Path, "//") {
		return nil, errorf(ErrBadSource, "source %q: give the folder with --dir, "+
			"not as //folder", s)
	}
	return u, checkURLHost(s, u)
}

func checkURLHost(s string, u *url.URL) error {
	if u.Scheme != "file" {
		if u.Host == "" {
			return errorf(ErrBadSource, "source %q has no host", s)
		}
		return nil
	}
	if u.Host != "" && u.Host != "localhost" {
		return errorf(ErrBadSource, "source %q: a file:// URL names a local path "+
			"(file:///path), not host %q", s, u.Host)
	}
	if !path.IsAbs(u.Path) {
		return errorf(ErrBadSource, "source %q: the path must be absolute", s)
	}
	return nil
}

// GitURL returns the plain git URL of a stored source (see ParseSource),
// for a job's checkout; a source that does not parse is returned as is.
func GitURL(source string) string {
	src, err := ParseSource(source)
	if err != nil {
		return source
	}
	return src.Git
}

// redact hides the password of a URL that carries one, for messages.
// Redact hides the password of a source or git URL, for showing it: a
// forced getter ("git::https://user:pass@host/repo") keeps its prefix.
func Redact(source string) string {
	prefix, rest, ok := strings.Cut(source, "::")
	if !ok {
		return redact(source)
	}
	return prefix + "::" + redact(rest)
}

func redact(gitURL string) string {
	u, err := url.Parse(gitURL)
	if err != nil || u.User == nil {
		return gitURL
	}
	return u.Redacted()
}

// fileURL turns an absolute local path into a file:// URL.
func fileURL(p string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Clean(p))}
	return u.String()
}
