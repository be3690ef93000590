// Package registry keeps Kiln's pipelines and their versions: it resolves
// a pipeline's ref, fetches that commit, compiles the pipeline program,
// asks the binary to describe itself, validates its job graph and records
// the result.
//
// # Pipelines and versions
//
// A pipeline is a name, a source (a git repository), a folder in it and a
// ref policy. A version is one build of it: the commit, the sha256 digest
// of the binary, the description the binary gave, and the compiler's
// output. A version is "ready" only once its binary was described and its
// graph validated; anything less is "failed", with the reason in Error and
// the compiler's lines in Output. A pipeline's current version is its
// newest ready one. Create records nothing unless the first build is
// ready; Build and Pin record every build, failed ones too.
//
// # Sources
//
// Sources are git URLs (https, http, ssh, git, file), with or without
// go-getter's "git::" prefix, or absolute local paths, which are taken as
// file:// URLs (see ParseSource). The source is stored as given; a plain
// git URL derived from it is what `git ls-remote`, the fetch and a job's
// checkout use. Note that a file:// source reads a repository on the
// master's disk: whoever may create pipelines may read any repository the
// master can.
//
// # Resolution
//
// A ref is resolved before anything is fetched, with one `git ls-remote
// --symref` (see Resolve): a full commit, then a tag, then a branch, then
// a semver constraint over version tags. Annotated tags are peeled to
// their commit. An empty ref means the remote's HEAD branch, and the
// pipeline then follows that branch by name. The ref is never passed to
// git as an argument; only the resolved commit reaches go-getter.
//
// # Fetching
//
// The commit is fetched with go-getter's git getter alone (no other
// getters, detectors or decompressors, no symlink copies, a timeout) into
// a fresh folder under DataDir/tmp that is removed after the build. The
// pipeline's folder must stay inside the checkout once symlinks are
// resolved, and no symlink in the checkout may lead out of it.
//
// # Overlay
//
// Pipeline programs require github.com/kilnci/kiln in their go.mod as
// they would with the published module. The Builder writes the SDK this
// Kiln carries (kiln.SDKSource and kiln.SDKGoMod) once, to
// DataDir/sdk/<version>-<hash>/, and compiles each program through a
// go.work in a scratch folder that uses the program's module and replaces
// Kiln's module with that copy. Nothing is written into the checkout: the
// go.work, its go.work.sum and the binary live in the scratch folder. The
// compile is offline by default (GOPROXY=off), with CGO_ENABLED=0,
// -trimpath, -buildvcs=false, -ldflags="-s -w", a shared Go build cache, a
// timeout and an environment of its own. Kiln's own module builds against
// itself, without the replace.
//
// # Build keys and coalescing
//
// A build key is the sha256 of what a compile depends on: the commit, the
// folder, the Go version, GOOS/GOARCH, the SDK's version and a hash of its
// source, and the build flags. The cache's build index maps keys to
// binaries, so a build whose key is known reuses its binary without
// fetching or compiling; only the describe and validation run again. The
// version is still recorded, with Reused set. Builds of one key that run
// at once share a single compile (singleflight), and every caller sees its
// progress lines.
//
// # Other platforms
//
// A version is built for the master's GOOS/GOARCH. A worker of another
// platform asks for the version's binary with its own; Variant then
// compiles the version's commit for that platform once, with the build key
// of that platform, and keeps it in the cache like any binary. Variants
// are not described: the version's own binary, from the same commit,
// already was.
//
// # Validation
//
// The binary is started through the host package with an environment of
// PATH and HOME only, asked for its description and stopped. Its plugin
// protocol must be this master's (both are named otherwise), and its jobs
// must form a graph: names non-empty and unique, dependencies that exist,
// no cycle (reported as its path, "a -> b -> a"). ValidateGraph is
// exported for others to reuse.
package registry
