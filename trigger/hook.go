package trigger

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode"
)

// Forges that send webhooks.
const (
	ForgeGitHub = "github"
	ForgeGitea  = "gitea" // Forgejo too: it sends Gitea's headers and body
	ForgeGitLab = "gitlab"
)

// Delivery is one authenticated webhook delivery.
type Delivery struct {
	Forge string // ForgeGitHub, ForgeGitea or ForgeGitLab

	// Event is the forge's event name as sent: "push", "ping", "create",
	// "Push Hook", "Tag Push Hook", ...
	Event string

	// ID names the delivery for deduplication: the forge, a colon, and
	// the forge's delivery ID ("github:72d3162e-…"), or "sha256:" and the
	// hex sha256 of the body when the forge sent none. A redelivery
	// repeats it. It is never empty.
	ID string

	Ping bool  // a GitHub ping, sent when the webhook is created
	Push *Push // nil when the event is not a push
}

// Push is what a push delivery says about the ref it moved.
type Push struct {
	Ref    string // the full ref: "refs/heads/main", "refs/tags/v1.2.0"
	Before string // the commit the ref pointed at, as sent; zeros for a new ref

	// After is the pushed commit, 40 or 64 lower-case hex digits; "" when
	// Deleted.
	After string

	// Deleted is true for a branch or tag deletion: the forge sent forty
	// (or sixty-four) zeros as the new commit, or GitHub's "deleted": true.
	Deleted bool

	Repo   string // the repository's full name or URL, for messages
	Pusher string // who pushed (login, username or name), for the run's record
}

// maxIDLen bounds a delivery ID taken from a header; forges send GUIDs.
const maxIDLen = 128

var (
	commitHex = regexp.MustCompile(`^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$`)
	zeros     = regexp.MustCompile(`^(0{40}|0{64})$`)
)

// A sender is how one forge names its headers; each list is tried in
// order.
type sender struct {
	forge      string
	events     []string // the header naming the event
	ids        []string // the headers carrying a delivery ID
	signatures []string // the headers carrying the signature or token
	check      func(sig string, body []byte, secret string) bool
	mismatch   string // the error when the check fails; %s is the header
}

// senders in the order Read tries them: Gitea and Forgejo also send
// GitHub's headers, so they must be recognised first.
var senders = []sender{
	{
		forge:      ForgeGitea,
		events:     []string{"X-Gitea-Event", "X-Forgejo-Event"},
		ids:        []string{"X-Gitea-Delivery", "X-Forgejo-Delivery"},
		signatures: []string{"X-Gitea-Signature", "X-Forgejo-Signature"},
		check:      checkHexMAC,
		mismatch:   "%s does not match the body: check the webhook secret",
	},
	{
		forge:      ForgeGitLab,
		events:     []string{"X-Gitlab-Event"},
		ids:        []string{"X-Gitlab-Event-UUID", "Idempotency-Key"},
		signatures: []string{"X-Gitlab-Token"},
		check:      checkToken,
		mismatch: "%s is not the pipeline's webhook secret: set the webhook's " +
			"secret token to it",
	},
	{
		forge:      ForgeGitHub,
		events:     []string{"X-GitHub-Event"},
		ids:        []string{"X-GitHub-Delivery"},
		signatures: []string{"X-Hub-Signature-256"},
		check:      checkPrefixedMAC,
		mismatch:   "%s does not match the body: check the webhook secret",
	},
}

// Read authenticates a webhook delivery and reads what it says. h holds
// the request's headers and body its raw bytes as received; the caller
// bounds the body's size. The signature is checked over those bytes
// before anything else is parsed, and a delivery is never accepted
// without one: an empty secret refuses every delivery.
//
// The delivery ID is not covered by any forge's signature: a captured
// body sent again under a new ID header passes. The ID only keeps
// redeliveries of the forge from running twice.
func Read(h http.Header, body []byte, secret string) (*Delivery, error) {
	s, event, err := senderOf(h)
	if err != nil {
		return nil, err
	}
	if err := s.verify(h, body, secret); err != nil {
		return nil, err
	}

	id, err := s.deliveryID(h, body)
	if err != nil {
		return nil, err
	}
	d := &Delivery{Forge: s.forge, Event: event, ID: id}

	payload, err := payloadOf(h, body)
	if err != nil {
		return nil, err
	}
	isPush, err := s.isPush(event, payload)
	if err != nil {
		return nil, err
	}
	d.Ping = s.forge == ForgeGitHub && event == "ping"
	if isPush {
		if d.Push, err = readPush(payload); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// senderOf finds the forge by its event header.
func senderOf(h http.Header) (*sender, string, error) {
	for i := range senders {
		s := &senders[i]
		if event, _ := first(h, s.events); event != "" {
			return s, event, nil
		}
	}
	return nil, "", errorf(ErrUnknownSender, "the request has no X-GitHub-Event, "+
		"X-Gitea-Event, X-Forgejo-Event or X-Gitlab-Event header: point only "+
		"a GitHub, Gitea, Forgejo or GitLab webhook at this address")
}

func (s *sender) verify(h http.Header, body []byte, secret string) error {
	if secret == "" {
		return errorf(ErrUnsigned, "no webhook secret is set, and unsigned deliveries "+
			"are never accepted: set a secret on the pipeline and the same one on "+
			"the webhook")
	}
	sig, name := first(h, s.signatures)
	if sig == "" {
		return errorf(ErrUnsigned, "the delivery has no %s header: set a secret on the "+
			"webhook", strings.Join(s.signatures, " or "))
	}
	if !s.check(sig, body, secret) {
		return errorf(ErrBadSignature, s.mismatch, name)
	}
	return nil
}

// checkPrefixedMAC checks GitHub's "sha256=<hex>" signature.
func checkPrefixedMAC(sig string, body []byte, secret string) bool {
	hexMAC, ok := strings.CutPrefix(sig, "sha256=")
	return ok && checkHexMAC(hexMAC, body, secret)
}

// checkHexMAC checks a hex HMAC-SHA256 of body keyed with secret. The
// comparison takes the same time wherever the two differ.
func checkHexMAC(sig string, body []byte, secret string) bool {
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// checkToken checks GitLab's token, which is the secret in plain text.
// Comparing digests rather than the strings keeps the secret's length from
// showing in the time taken.
func checkToken(token string, _ []byte, secret string) bool {
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(secret))
	return hmac.Equal(a[:], b[:])
}

func (s *sender) deliveryID(h http.Header, body []byte) (string, error) {
	id, name := first(h, s.ids)
	if id == "" {
		sum := sha256.Sum256(body)
		return s.forge + ":sha256:" + hex.EncodeToString(sum[:]), nil
	}
	if len(id) > maxIDLen || strings.IndexFunc(id, notPrintable) >= 0 {
		return "", errorf(ErrMalformed, "%s %.20q… is longer than %d characters or "+
			"holds characters other than printable ASCII, which no forge sends: "+
			"drop the header or send the forge's own", name, id, maxIDLen)
	}
	return s.forge + ":" + id, nil
}

// payloadOf returns the JSON of a delivery: the body, or its "payload"
// field when the body is form-encoded.
func payloadOf(h http.Header, body []byte) ([]byte, error) {
	mediaType, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mediaType != "application/x-www-form-urlencoded" {
		return body, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errorf(ErrMalformed, "the form-encoded body cannot be read (%v): "+
			"set the webhook's content type to application/json", err)
	}
	if !form.Has("payload") {
		return nil, errorf(ErrMalformed, "the form-encoded body has no payload field: "+
			"set the webhook's content type to application/json")
	}
	return []byte(form.Get("payload")), nil
}

// isPush says whether a delivery is a push. GitHub and Gitea name the
// event in a header; GitLab's body says it in object_kind, which must then
// agree with the header.
func (s *sender) isPush(event string, payload []byte) (bool, error) {
	if s.forge != ForgeGitLab {
		return event == "push", nil
	}
	var kind struct {
		ObjectKind string `json:"object_kind"`
	}
	jsonErr := json.Unmarshal(payload, &kind)
	push := kind.ObjectKind == "push" || kind.ObjectKind == "tag_push"
	if (event == "Push Hook" || event == "Tag Push Hook") && !push {
		if jsonErr != nil {
			return false, errorf(ErrMalformed, "the %s body is not JSON (%v): send "+
				"the webhook as application/json", event, jsonErr)
		}
		return false, errorf(ErrMalformed, "the %s body has object_kind %q, not push "+
			"or tag_push: the delivery is not what its X-Gitlab-Event says", event,
			kind.ObjectKind)
	}
	return push && jsonErr == nil, nil
}

// pushBody holds the fields of a push that Read uses, as GitHub, Gitea and
// GitLab name them.
type pushBody struct {
	Ref     string `json:"ref"`
	Before  string `json:"before"`
	After   string `json:"after"`
	Deleted bool   `json:"deleted"` // GitHub only

	Repository struct {
		FullName string `json:"full_name"` // GitHub, Gitea
		HTMLURL  string `json:"html_url"`  // GitHub, Gitea
		Homepage string `json:"homepage"`  // GitLab
	} `json:"repository"`
	Project struct { // GitLab
		PathWithNamespace string `json:"path_with_namespace"`
		WebURL            string `json:"web_url"`
	} `json:"project"`

	Pusher struct {
		Login    string `json:"login"`    // Gitea
		Username string `json:"username"` // Gitea
		Name     string `json:"name"`     // GitHub, where it is the login
	} `json:"pusher"`
	UserUsername string `json:"user_username"` // GitLab
	UserName     string `json:"user_name"`     // GitLab
}

func readPush(payload []byte) (*Push, error) {
	var b pushBody
	if err := json.Unmarshal(payload, &b); err != nil {
		return nil, errorf(ErrMalformed, "the push body is not the JSON of a push (%v): "+
			"send the webhook as application/json", err)
	}
	if err := checkPushRef(b.Ref); err != nil {
		return nil, err
	}

	p := &Push{
		Ref:     b.Ref,
		Before:  b.Before,
		Deleted: b.Deleted || zeros.MatchString(b.After),
		Repo: firstOf(b.Repository.FullName, b.Project.PathWithNamespace,
			b.Repository.HTMLURL, b.Project.WebURL, b.Repository.Homepage),
		Pusher: firstOf(b.Pusher.Login, b.Pusher.Username, b.Pusher.Name,
			b.UserUsername, b.UserName),
	}
	if p.Deleted {
		return p, nil
	}
	if !commitHex.MatchString(b.After) {
		return nil, errorf(ErrMalformed, "the push to %s has \"after\" %.70q, which is "+
			"not a commit (40 or 64 hex digits)", b.Ref, b.After)
	}
	p.After = strings.ToLower(b.After)
	return p, nil
}

func checkPushRef(ref string) error {
	switch {
	case ref == "":
		return errorf(ErrMalformed, "the push body has no ref: it is not a push delivery")
	case !strings.HasPrefix(ref, "refs/") || len(ref) == len("refs/"):
		return errorf(ErrMalformed, "the push's ref %.70q is not a full ref name such "+
			"as refs/heads/main", ref)
	case strings.IndexFunc(ref, func(r rune) bool { return r == ' ' || unicode.IsControl(r) }) >= 0:
		return errorf(ErrMalformed, "the push's ref %.70q contains a space or a "+
			"control character, which no git ref has", ref)
	}
	return nil
}

// first returns the first non-empty value among the headers names, and
// that header's name.
func first(h http.Header, names []string) (value, name string) {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v, n
		}
	}
	return "", ""
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// notPrintable is true for a rune outside printable ASCII.
func notPrintable(r rune) bool { return r < 0x20 || r >= 0x7f }
