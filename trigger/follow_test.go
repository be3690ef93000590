package trigger

import (
	"strings"
	"testing"
)

func TestFollows(t *testing.T) {
	t.Parallel()
	const commit = "366701fde727cb7a9e7f21eb88264f59f6f9b89c"
	tests := []struct {
		policy, ref string
		want        bool
		reason      string // a part of the reason, when not followed
	}{
		// Branch names, short and full.
		{"main", "refs/heads/main", true, ""},
		{"main", "refs/heads/master", false, "the pipeline follows main"},
		{"main", "refs/heads/feature/main", false, "follows main"},
		{"feature/x", "refs/heads/feature/x", true, ""},
		{"Main", "refs/heads/main", false, "follows Main"},
		{"refs/heads/main", "refs/heads/main", true, ""},
		{"refs/heads/main", "refs/tags/main", false, "follows branch main"},
		{"refs/heads/main", "refs/heads/dev", false, "follows branch main"},

		// A plain name is a branch or a tag, as Resolve reads it.
		{"main", "refs/tags/main", true, ""},
		{"release", "refs/tags/release", true, ""},

		// Exact tag names, short and full.
		{"v1.2.0", "refs/tags/v1.2.0", true, ""},
		{"v1.2.0", "refs/tags/v1.3.0", false, "v1.2.0 allows"},
		{"v1.2.0", "refs/tags/1.2.0", true, ""}, // Resolve's "=1.2.0" picks it
		{"v1.2.0", "refs/heads/v1.2.0", true, ""},
		{"refs/tags/v1.2.0", "refs/tags/v1.2.0", true, ""},
		{"refs/tags/v1.2.0", "refs/heads/v1.2.0", false, "follows tag v1.2.0"},
		{"refs/tags/v1.2.0", "refs/tags/1.2.0", false, "follows tag v1.2.0"},

		// Semver constraints pick version tags, never branches.
		{"^1.2", "refs/tags/v1.2.0", true, ""},
		{"^1.2", "refs/tags/1.9.3", true, ""},
		{"^1.2", "refs/tags/v1.1.9", false, "the version tags that ^1.2 allows"},
		{"^1.2", "refs/tags/v2.0.0", false, "^1.2 allows"},
		{"^1.2", "refs/tags/v1.3.0-rc.1", false, "^1.2 allows"},
		{"^1.2", "refs/tags/v1.3", false, "tag v1.3 is not a version"},
		{"^1.2", "refs/tags/release-1.3.0", false, "is not a version"},
		{"^1.2", "refs/heads/main", false, "^1.2 allows"},
		{"^1.2", "refs/heads/v1.3.0", false, "^1.2 allows"},
		{"~1.4.0", "refs/tags/v1.4.7", true, ""},
		{"~1.4.0", "refs/tags/v1.5.0", false, "~1.4.0 allows"},
		{">=2", "refs/tags/v2.0.0", true, ""},
		{">=2", "refs/tags/v10.1.0", true, ""},
		{">=2", "refs/tags/v1.9.9", false, ">=2 allows"},
		{"<3", "refs/tags/v2.9.9", true, ""},
		{"<3", "refs/tags/v3.0.0", false, "<3 allows"},
		{">=2, <3", "refs/tags/v2.5.1", true, ""},
		{">=2, <3", "refs/tags/v3.0.0", false, ">=2, <3 allows"},
		{"1.x", "refs/tags/v1.7.0", true, ""},

		// Names that are constraints too follow both, as Follows cannot
		// see which refs exist.
		{"1.x", "refs/heads/1.x", true, ""},
		{"v2", "refs/tags/v2", true, ""},
		{"v2", "refs/tags/v2.1.0", true, ""},
		{"v2", "refs/heads/v2.1.0", false, "v2 allows"},

		// A commit's prefix is never a constraint for Resolve, though
		// "1234" parses as one.
		{"1234", "refs/tags/1234", true, ""},
		{"1234", "refs/tags/1234.0.0", false, "the pipeline follows 1234"},

		// A pinned commit follows no push.
		{commit, "refs/heads/main", false, "pinned to commit " + commit},
		{strings.ToUpper(commit), "refs/tags/" + commit, false, "pinned to commit " + commit},

		// Refs that are neither branches nor tags.
		{"main", "refs/pull/1/head", false, "neither a branch nor a tag"},
		{"main", "refs/heads/", false, "neither a branch nor a tag"},
		{"main", "main", false, "neither a branch nor a tag"},

		// No policy means the default branch, which a push does not name.
		{"", "refs/heads/main", false, "give the pipeline a ref"},
	}
	for _, tt := range tests {
		t.Run(tt.policy+" "+tt.ref, func(t *testing.T) {
			t.Parallel()
			got, reason := Follows(tt.policy, tt.ref)
			if got != tt.want {
				t.Fatalf("Follows(%q, %q) = %v (%s), want %v", tt.policy, tt.ref, got,
					reason, tt.want)
			}
			if got && reason != "" {
				t.Errorf("followed, yet the reason is %q", reason)
			}
			if !got && !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q does not say %q", reason, tt.reason)
			}
		})
	}
}
