package trigger

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testSecret = "kiln webhook test secret"

// Delivery IDs the tests send; any string of the forges' shape does.
const (
	githubID = "0b3f6a3e-5d1c-11f0-9a0e-1c6b2d7e8f90"
	giteaID  = "4e9d2c1a-7b3f-4a5e-8c6d-2f1e0a9b8c7d"
	gitlabID = "a1b2c3d4-e5f6-4789-abcd-ef0123456789"
)

const zeros40 = "0000000000000000000000000000000000000000"

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mac is the hex HMAC-SHA256 of body keyed with secret, computed here
// rather than with the code under test.
func mac(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// githubHeaders are the headers GitHub sends with a delivery signed with
// secret.
func githubHeaders(event, secret string, body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Delivery", githubID)
	h.Set("X-Hub-Signature-256", "sha256="+mac(secret, body))
	return h
}

// giteaHeaders are the headers Gitea sends: its own and GitHub's.
func giteaHeaders(event, secret string, body []byte) http.Header {
	h := githubHeaders(event, secret, body)
	h.Set("X-GitHub-Delivery", giteaID)
	h.Set("X-Gitea-Event", event)
	h.Set("X-Gitea-Event-Type", event)
	h.Set("X-Gitea-Delivery", giteaID)
	h.Set("X-Gitea-Signature", mac(secret, body))
	return h
}

func gitlabHeaders(event, secret string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Gitlab-Event", event)
	h.Set("X-Gitlab-Event-UUID", gitlabID)
	h.Set("X-Gitlab-Token", secret)
	return h
}

func TestReadFixtures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string
		headers func(body []byte) http.Header
		want    Delivery
		push    *Push
	}{{
		name: "github push to a branch",
		file: "github/push.branch.json",
		headers: func(b []byte) http.Header {
			return githubHeaders("push", testSecret, b)
		},
		want: Delivery{Forge: ForgeGitHub, Event: "push", ID: "github:" + githubID},
		push: &Push{Ref: "refs/heads/main", Before: "2f780193b136b72bfea4eeb640786a8c4450c7a2",
			After: "366701fde727cb7a9e7f21eb88264f59f6f9b89c",
			Repo:  "woodpecker-ci/woodpecker", Pusher: "6543"},
	}, {
		name: "github push that creates a branch is a push, not a deletion",
		file: "github/push.new-branch.json",
		headers: func(b []byte) http.Header {
			return githubHeaders("push", testSecret, b)
		},
		want: Delivery{Forge: ForgeGitHub, Event: "push", ID: "github:" + githubID},
		push: &Push{Ref: "refs/heads/master", Before: zeros40,
			After: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
			Repo:  "Codertocat/Hello-World", Pusher: "Codertocat"},
	}, {
		name: "github ping",
		file: "github/ping.json",
		headers: func(b []byte) http.Header {
			return githubHeaders("ping", testSecret, b)
		},
		want: Delivery{Forge: ForgeGitHub, Event: "ping", ID: "github:" + githubID, Ping: true},
	}, {
		name: "github tag creation is not a push",
		file: "github/create.tag.json",
		headers: func(b []byte) http.Header {
			return githubHeaders("create", testSecret, b)
		},
		want: Delivery{Forge: ForgeGitHub, Event: "create", ID: "github:" + githubID},
	}, {
		name: "gitea push with github headers too is gitea",
		file: "gitea/push.multi-commit.json",
		headers: func(b []byte) http.Header {
			return giteaHeaders("push", testSecret, b)
		},
		want: Delivery{Forge: ForgeGitea, Event: "push", ID: "gitea:" + giteaID},
		push: &Push{Ref: "refs/heads/main", Before: "6efcf5b7c98f3e7a491675164b7a2e7acac27941",
			After: "29be01c073851cf0db0c6a466e396b725a670453",
			Repo:  "Test-CI/multi-line-secrets", Pusher: "test-user"},
	}, {
		name: "gitlab push hook",
		file: "gitlab/push.json",
		headers: func([]byte) http.Header {
			return gitlabHeaders("Push Hook", testSecret)
		},
		want: Delivery{Forge: ForgeGitLab, Event: "Push Hook", ID: "gitlab:" + gitlabID},
		push: &Push{Ref: "refs/heads/master", Before: "9217710ce8c7e1eae7a5d1c45f6e43e1c769f866",
			After: "2adc9465c4edfc33834e173fe89436a7cb899a1d",
			Repo:  "gitlab-org/hello-world", Pusher: "sytses"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := fixture(t, tt.file)
			d, err := Read(tt.headers(body), body, testSecret)
			if err != nil {
				t.Fatal(err)
			}
			checkDelivery(t, d, tt.want, tt.push)
		})
	}
}

func checkDelivery(t *testing.T, d *Delivery, want Delivery, push *Push) {
	t.Helper()
	got := *d
	got.Push = nil
	if got != want {
		t.Errorf("delivery = %+v, want %+v", got, want)
	}
	switch {
	case push == nil && d.Push != nil:
		t.Errorf("push = %+v, want none", *d.Push)
	case push != nil && d.Push == nil:
		t.Errorf("no push, want %+v", *push)
	case push != nil && *d.Push != *push:
		t.Errorf("push = %+v, want %+v", *d.Push, *push)
	}
}

func TestReadRefusesUnauthenticated(t *testing.T) {
	t.Parallel()
	body := fixture(t, "github/push.branch.json")
	changed := bytes.Replace(body, []byte(`"refs/heads/main"`), []byte(`"refs/heads/mail"`), 1)
	if bytes.Equal(changed, body) {
		t.Fatal("the fixture no longer holds refs/heads/main")
	}
	without := func(h http.Header, names ...string) http.Header {
		for _, n := range names {
			h.Del(n)
		}
		return h
	}

	tests := []struct {
		name    string
		headers http.Header
		body    []byte
		// noSecret reads with an empty secret instead of testSecret.
		noSecret bool
		want     error
		text     string
	}{{
		name:    "no forge header",
		headers: without(githubHeaders("push", testSecret, body), "X-GitHub-Event"),
		want:    ErrUnknownSender,
		text:    "has no X-GitHub-Event",
	}, {
		name:    "one byte changed after signing",
		headers: githubHeaders("push", testSecret, body),
		body:    changed,
		want:    ErrBadSignature,
		text:    "X-Hub-Signature-256 does not match the body: check the webhook secret",
	}, {
		name:    "signed with another secret",
		headers: githubHeaders("push", "another secret", body),
		want:    ErrBadSignature,
	}, {
		name: "github signature without sha256= prefix",
		headers: setHeader(githubHeaders("push", testSecret, body), "X-Hub-Signature-256",
			mac(testSecret, body)),
		want: ErrBadSignature,
	}, {
		name: "github signature not hex",
		headers: setHeader(githubHeaders("push", testSecret, body), "X-Hub-Signature-256",
			"sha256=zz"),
		want: ErrBadSignature,
	}, {
		name:    "github signature missing",
		headers: without(githubHeaders("push", testSecret, body), "X-Hub-Signature-256"),
		want:    ErrUnsigned,
		text:    "no X-Hub-Signature-256 header",
	}, {
		name:     "empty secret refuses even a matching signature",
		headers:  githubHeaders("push", "", body),
		noSecret: true,
		want:     ErrUnsigned,
		text:     "no webhook secret is set",
	}, {
		name: "gitea with only github's signature",
		headers: without(giteaHeaders("push", testSecret, body),
			"X-Gitea-Signature"),
		want: ErrUnsigned,
		text: "no X-Gitea-Signature or X-Forgejo-Signature header",
	}, {
		name: "gitea signature over another body",
		headers: setHeader(giteaHeaders("push", testSecret, body), "X-Gitea-Signature",
			mac(testSecret, changed)),
		want: ErrBadSignature,
		text: "X-Gitea-Signature does not match",
	}, {
		name:    "gitlab token missing",
		headers: without(gitlabHeaders("Push Hook", testSecret), "X-Gitlab-Token"),
		want:    ErrUnsigned,
	}, {
		name:    "gitlab token wrong",
		headers: gitlabHeaders("Push Hook", testSecret+"x"),
		want:    ErrBadSignature,
		text:    "X-Gitlab-Token is not the pipeline's webhook secret",
	}, {
		name:    "gitlab token is not an hmac",
		headers: gitlabHeaders("Push Hook", mac(testSecret, body)),
		want:    ErrBadSignature,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := body
			if tt.body != nil {
				b = tt.body
			}
			secret := testSecret
			if tt.noSecret {
				secret = ""
			}
			d, err := Read(tt.headers, b, secret)
			if d != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Read = %+v, %v; want no delivery and %v", d, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not say %q", err, tt.text)
			}
		})
	}
}

func setHeader(h http.Header, name, value string) http.Header {
	h.Set(name, value)
	return h
}

func TestReadKnownVector(t *testing.T) {
	t.Parallel()
	const (
		secret = "It's a Secret to Everybody"
		sig    = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	)
	body := []byte("Hello, World!")
	if got := "sha256=" + mac(secret, body); got != sig {
		t.Fatalf("the test's own HMAC gives %s, want %s", got, sig)
	}
	h := http.Header{}
	h.Set("X-GitHub-Event", "ping")
	h.Set("X-Hub-Signature-256", sig)
	d, err := Read(h, body, secret)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Ping {
		t.Errorf("delivery %+v is not a ping", d)
	}
	if _, err := Read(h, []byte("Hello, World?"), secret); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another body: err = %v, want ErrBadSignature", err)
	}
}

func TestReadFormEncoded(t *testing.T) {
	t.Parallel()
	payload := fixture(t, "github/push.branch.json")
	body := []byte("payload=" + url.QueryEscape(string(payload)))
	h := githubHeaders("push", testSecret, body)
	h.Set("Content-Type", "application/x-www-form-urlencoded")

	d, err := Read(h, body, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if d.Push == nil || d.Push.After != "366701fde727cb7a9e7f21eb88264f59f6f9b89c" {
		t.Fatalf("push = %+v, want the fixture's push", d.Push)
	}

	// The signature covers the encoded bytes, not the JSON inside.
	h.Set("X-Hub-Signature-256", "sha256="+mac(testSecret, payload))
	if _, err := Read(h, body, testSecret); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed over the JSON: err = %v, want ErrBadSignature", err)
	}

	noPayload := []byte("data=" + url.QueryEscape(string(payload)))
	h = githubHeaders("push", testSecret, noPayload)
	h.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if _, err := Read(h, noPayload, testSecret); !errors.Is(err, ErrMalformed) {
		t.Errorf("form without payload: err = %v, want ErrMalformed", err)
	}
}

func TestReadDeletions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string
		edits   []string // old, new, ...
		headers func(body []byte) http.Header
		ref     string
	}{{
		name:  "github branch deletion by zeros",
		file:  "github/push.branch.json",
		edits: []string{`"366701fde727cb7a9e7f21eb88264f59f6f9b89c"`, `"` + zeros40 + `"`},
		headers: func(b []byte) http.Header {
			return githubHeaders("push", testSecret, b)
		},
		ref: "refs/heads/main",
	}, {
		name:  "github deleted true",
		file:  "github/push.branch.json",
		edits: []string{`"deleted": false`, `"deleted": true`},
		headers: func(b []byte) http.Header {
			return githubHeaders("push", testSecret, b)
		},
		ref: "refs/heads/main",
	}, {
		name:  "gitea branch deletion",
		file:  "gitea/push.multi-commit.json",
		edits: []string{`"29be01c073851cf0db0c6a466e396b725a670453"`, `"` + zeros40 + `"`},
		headers: func(b []byte) http.Header {
			return giteaHeaders("push", testSecret, b)
		},
		ref: "refs/heads/main",
	}, {
		name: "gitlab tag deletion",
		file: "gitlab/push.json",
		edits: []string{
			`"object_kind": "push"`, `"object_kind": "tag_push"`,
			`"refs/heads/master"`, `"refs/tags/v1.0.0"`,
			`"after": "2adc9465c4edfc33834e173fe89436a7cb899a1d"`, `"after": "` + zeros40 + `"`,
		},
		headers: func([]byte) http.Header { return gitlabHeaders("Tag Push Hook", testSecret) },
		ref:     "refs/tags/v1.0.0",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := edit(t, fixture(t, tt.file), tt.edits...)
			d, err := Read(tt.headers(body), body, testSecret)
			if err != nil {
				t.Fatal(err)
			}
			if d.Push == nil || !d.Push.Deleted || d.Push.After != "" || d.Push.Ref != tt.ref {
				t.Fatalf("push = %+v, want a deletion of %s with no after", d.Push, tt.ref)
			}
		})
	}
}

// edit returns a copy of body with each old string replaced once by the
// new one that follows it.
func edit(t *testing.T, body []byte, pairs ...string) []byte {
	t.Helper()
	out := bytes.Clone(body)
	for i := 0; i < len(pairs); i += 2 {
		next := bytes.Replace(out, []byte(pairs[i]), []byte(pairs[i+1]), 1)
		if bytes.Equal(next, out) {
			t.Fatalf("the fixture has no %s", pairs[i])
		}
		out = next
	}
	return out
}

func TestReadMalformedPushes(t *testing.T) {
	t.Parallel()
	gitlab := fixture(t, "gitlab/push.json")
	tests := []struct {
		name    string
		body    string
		headers func(body []byte) http.Header
		text    string
	}{{
		name: "not json",
		body: `{"ref": "refs/heads/main",`,
		text: "not the JSON of a push",
	}, {
		name: "no ref",
		body: `{"after": "366701fde727cb7a9e7f21eb88264f59f6f9b89c"}`,
		text: "has no ref",
	}, {
		name: "short ref",
		body: `{"ref": "main", "after": "366701fde727cb7a9e7f21eb88264f59f6f9b89c"}`,
		text: `ref "main" is not a full ref name`,
	}, {
		name: "ref with a newline",
		body: `{"ref": "refs/heads/a\nb", "after": "366701fde727cb7a9e7f21eb88264f59f6f9b89c"}`,
		text: "control character",
	}, {
		name: "after is not a commit",
		body: `{"ref": "refs/heads/main", "after": "366701f"}`,
		text: `"after" "366701f", which is not a commit`,
	}, {
		name: "after missing",
		body: `{"ref": "refs/heads/main"}`,
		text: `"after" "", which is not a commit`,
	}, {
		name: "gitlab push hook that is a merge request",
		body: strings.Replace(string(gitlab), `"object_kind": "push"`,
			`"object_kind": "merge_request"`, 1),
		headers: func([]byte) http.Header { return gitlabHeaders("Push Hook", testSecret) },
		text:    `object_kind "merge_request", not push or tag_push`,
	}, {
		name:    "gitlab push hook that is not json",
		body:    "object_kind=push",
		headers: func([]byte) http.Header { return gitlabHeaders("Push Hook", testSecret) },
		text:    "the Push Hook body is not JSON",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := []byte(tt.body)
			h := githubHeaders("push", testSecret, body)
			if tt.headers != nil {
				h = tt.headers(body)
			}
			d, err := Read(h, body, testSecret)
			if d != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Read = %+v, %v; want ErrMalformed", d, err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not say %q", err, tt.text)
			}
		})
	}
}

func TestReadIgnoresBodiesOfOtherEvents(t *testing.T) {
	t.Parallel()
	for _, h := range []http.Header{
		githubHeaders("issues", testSecret, []byte("not json")),
		gitlabHeaders("Note Hook", testSecret),
	} {
		d, err := Read(h, []byte("not json"), testSecret)
		if err != nil || d.Push != nil || d.Ping {
			t.Errorf("Read = %+v, %v; want a delivery that is neither push nor ping", d, err)
		}
	}
}

func TestReadDeliveryIDs(t *testing.T) {
	t.Parallel()
	ping := fixture(t, "github/ping.json")
	gitlab := fixture(t, "gitlab/push.json")
	// sha256sum testdata/webhooks/{github/ping.json,gitlab/push.json}
	const (
		pingSum   = "99c1656b2a959bedc162ec8881ececbd96b281059f43862dfde6a9939aa7decc"
		gitlabSum = "857ad39bf8cbd5659f673ea94d5268f0a6842d331d2b192e9b51df464132d51a"
	)
	forgejo := http.Header{}
	forgejo.Set("X-Forgejo-Event", "push")
	forgejo.Set("X-Forgejo-Delivery", giteaID)
	forgejo.Set("X-Forgejo-Signature", mac(testSecret, gitlab))

	tests := []struct {
		name    string
		headers http.Header
		body    []byte
		want    string
	}{{
		name:    "github's delivery header",
		headers: githubHeaders("ping", testSecret, ping),
		body:    ping,
		want:    "github:" + githubID,
	}, {
		name:    "github without one falls back to the body's hash",
		headers: delHeader(githubHeaders("ping", testSecret, ping), "X-GitHub-Delivery"),
		body:    ping,
		want:    "github:sha256:" + pingSum,
	}, {
		name: "gitea's header wins over github's",
		headers: setHeader(giteaHeaders("ping", testSecret, ping), "X-GitHub-Delivery",
			githubID),
		body: ping,
		want: "gitea:" + giteaID,
	}, {
		name:    "forgejo alone is gitea",
		headers: forgejo,
		body:    gitlab,
		want:    "gitea:" + giteaID,
	}, {
		name:    "gitlab's event uuid",
		headers: gitlabHeaders("Push Hook", testSecret),
		body:    gitlab,
		want:    "gitlab:" + gitlabID,
	}, {
		name: "gitlab's idempotency key when there is no uuid",
		headers: setHeader(delHeader(gitlabHeaders("Push Hook", testSecret),
			"X-Gitlab-Event-UUID"), "Idempotency-Key", "key-1"),
		body: gitlab,
		want: "gitlab:key-1",
	}, {
		name: "gitlab without either falls back to the body's hash",
		headers: delHeader(gitlabHeaders("Push Hook", testSecret),
			"X-Gitlab-Event-UUID"),
		body: gitlab,
		want: "gitlab:sha256:" + gitlabSum,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := Read(tt.headers, tt.body, testSecret)
			if err != nil {
				t.Fatal(err)
			}
			if d.ID != tt.want {
				t.Errorf("ID = %q, want %q", d.ID, tt.want)
			}
		})
	}
}

func TestReadRefusesOddDeliveryIDs(t *testing.T) {
	t.Parallel()
	ping := fixture(t, "github/ping.json")
	for _, id := range []string{strings.Repeat("a", 129), "ü-is-not-ascii"} {
		h := setHeader(githubHeaders("ping", testSecret, ping), "X-GitHub-Delivery", id)
		if d, err := Read(h, ping, testSecret); !errors.Is(err, ErrMalformed) {
			t.Errorf("ID %.20q: Read = %+v, %v; want ErrMalformed", id, d, err)
		}
	}
}

func delHeader(h http.Header, name string) http.Header {
	h.Del(name)
	return h
}

// FuzzRead sends random bodies under each forge's headers, signed or not,
// and checks that Read never panics, never accepts a bad signature, and
// that what it accepts keeps its promises.
func FuzzRead(f *testing.F) {
	for _, name := range []string{"github/push.branch.json", "github/ping.json",
		"gitea/push.multi-commit.json", "gitlab/push.json"} {
		body := fixture(f, name)
		for forge := range uint8(4) {
			f.Add(forge, true, "push", "", body)
			f.Add(forge, false, "Push Hook", "sha256=00", body)
		}
	}
	f.Add(uint8(0), true, "push", "", []byte(`{"ref":"refs/tags/x","after":"`+zeros40+`"}`))
	f.Add(uint8(2), true, "Tag Push Hook", "", []byte(`{"object_kind":"tag_push"}`))

	f.Fuzz(func(t *testing.T, forge uint8, signed bool, event, sig string, body []byte) {
		h, good := fuzzHeaders(forge%4, event, body)
		if signed {
			sig = good
		} else if sig == good {
			return
		}
		for _, name := range []string{"X-Hub-Signature-256", "X-Gitea-Signature",
			"X-Gitlab-Token"} {
			if h.Get(name) != "" {
				h.Set(name, sig)
			}
		}

		d, err := Read(h, body, testSecret)
		if !signed || forge%4 == 3 || event == "" {
			if d != nil || err == nil {
				t.Fatalf("accepted a delivery it should not: %+v", d)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("signed delivery refused with %v", err)
			}
			return
		}
		checkFuzzed(t, d)
	})
}

// fuzzHeaders returns the headers of forge 0 (GitHub), 1 (Gitea), 2
// (GitLab) or 3 (none), and the signature that is right for body.
func fuzzHeaders(forge uint8, event string, body []byte) (http.Header, string) {
	h := http.Header{}
	switch forge {
	case 0:
		h.Set("X-GitHub-Event", event)
		h.Set("X-Hub-Signature-256", "-")
		return h, "sha256=" + mac(testSecret, body)
	case 1:
		h.Set("X-Gitea-Event", event)
		h.Set("X-Gitea-Signature", "-")
		return h, mac(testSecret, body)
	case 2:
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Token", "-")
		return h, testSecret
	}
	h.Set("X-Hub-Signature-256", "-")
	return h, "sha256=" + mac(testSecret, body)
}

func checkFuzzed(t *testing.T, d *Delivery) {
	if d.ID == "" || !strings.HasPrefix(d.ID, d.Forge+":") {
		t.Fatalf("ID %q does not start with the forge %q", d.ID, d.Forge)
	}
	p := d.Push
	if p == nil {
		return
	}
	if !strings.HasPrefix(p.Ref, "refs/") {
		t.Fatalf("push ref %q is not a full ref", p.Ref)
	}
	if p.Deleted != (p.After == "") || (!p.Deleted && !commitHex.MatchString(p.After)) {
		t.Fatalf("push after %q, deleted %v", p.After, p.Deleted)
	}
}
