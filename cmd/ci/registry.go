package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/kilnci/kiln/proto/kilnpb"
)

func newRegistryCommand(e *env) *cobra.Command {
	return newGroupCommand("registry", "Look at the versions that the registry built",
		newRegistryListCommand(e),
	)
}

type registryListOptions struct {
	clientOptions
}

func newRegistryListCommand(e *env) *cobra.Command {
	o := &registryListOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:     "list [NAME]",
		Aliases: []string{"ls"},
		Short:   "List every version of every pipeline, or of one",
		Args:    wantArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return o.run(cmd, name)
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *registryListOptions) run(cmd *cobra.Command, name string) error {
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	resp, err := c.ListVersions(ctx, &kilnpb.ListVersionsRequest{Name: name})
	if err != nil {
		return c.callError(ctx, err)
	}

	out := cmd.OutOrStdout()
	if o.wantJSON() {
		list := make([]versionJSON, 0, len(resp.Versions))
		for _, v := range resp.Versions {
			list = append(list, newVersionJSON(v))
		}
		return writeJSON(out, list)
	}

	now := o.now()
	t := newTable(out, "PIPELINE", "VERSION", "REF", "COMMIT", "DIGEST", "STATUS", "BUILD",
		"CREATED")
	for _, v := range resp.Versions {
		t.row(v.Pipeline, version(v.Version), v.Ref, short(v.Commit, 12), shortDigest(v.Digest),
			v.Status, buildTime(v), ago(v.Created, now))
	}
	return t.flush()
}

// buildTime shows how long a version took to build, or that it took its
// binary from the build index.
func buildTime(v *kilnpb.Version) string {
	if v.Reused {
		return "reused"
	}
	if v.BuildMs == 0 {
		return ""
	}
	return humanDuration(msDuration(v.BuildMs))
}

type recompileOptions struct {
	clientOptions
}

func newRecompileCommand(e *env) *cobra.Command {
	o := &recompileOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "recompile NAME[@REF]",
		Short: "Build a pipeline again, from the ref it follows or from REF",
		Long: "Build a pipeline again, from the ref it follows or from REF, and make the\n" +
			"result its current version when it builds. REF is a branch, a tag, a full\n" +
			"commit or a semver constraint over tags (^1.2, ~1.4.0, >=2).",
		Example: "  ci recompile build\n  ci recompile build@release/1.4",
		Args:    wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *recompileOptions) run(cmd *cobra.Command, arg string) error {
	name, ref, err := parseNameRef(arg)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	stream, err := c.Recompile(ctx, &kilnpb.RecompileRequest{Name: name, Ref: ref})
	if err != nil {
		return c.callError(ctx, err)
	}
	if err := o.finishBuild(cmd, c, name, stream); err != nil {
		return err
	}
	if p, err := c.GetPipeline(ctx, &kilnpb.GetPipelineRequest{Name: name}); err == nil &&
		ref != "" && ref != p.Ref && !o.wantJSON() {
		fmt.Fprintf(cmd.ErrOrStderr(), "note: %s still follows %s, which the next plain "+
			"recompile builds; ci pin %s@%s follows %s instead\n", name, p.Ref, name, ref, ref)
	}
	return nil
}

type pinOptions struct {
	clientOptions
}

func newPinCommand(e *env) *cobra.Command {
	o := &pinOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "pin NAME@REF",
		Short: "Make a pipeline follow REF, and build it",
		Long: "Make a pipeline follow REF from now on, and build it. REF is a branch, a tag,\n" +
			"a full commit or a semver constraint over tags (^1.2, ~1.4.0, >=2).",
		Example: "  ci pin build@v1.4.2\n  ci pin build@^1.2",
		Args:    wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *pinOptions) run(cmd *cobra.Command, arg string) error {
	name, ref, err := parseNameRef(arg)
	if err == nil && ref == "" {
		err = fmt.Errorf("%q: pin needs a ref: NAME@REF", arg)
	}
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	c, err := o.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()

	ctx := cmd.Context()
	stream, err := c.Pin(ctx, &kilnpb.PinRequest{Name: name, Ref: ref})
	if err != nil {
		return c.callError(ctx, err)
	}
	return o.finishBuild(cmd, c, name, stream)
}

// parseNameRef splits "NAME@REF" at its first "@": a ref may hold any
// character a branch, a tag or a semver constraint can (/ . ^ ~ >= and even
// @), a pipeline name may not hold "@". The ref is empty when arg has no
// "@"; an "@" with nothing before or after it is a mistake.
func parseNameRef(arg string) (name, ref string, err error) {
	name, ref, hasAt := strings.Cut(arg, "@")
	switch {
	case arg == "":
		return "", "", errors.New("missing pipeline name")
	case name == "":
		return "", "", fmt.Errorf("%q: missing pipeline name before \"@\"", arg)
	case hasAt && ref == "":
		return "", "", fmt.Errorf("%q: missing ref after \"@\"", arg)
	}
	return name, ref, nil
}

// buildStream is what CreatePipeline, Recompile and Pin answer: progress
// lines, then the version.
type buildStream = grpc.ServerStreamingClient[kilnpb.BuildEvent]

// finishBuild follows a build to its end and prints the version. A build
// that failed prints the compiler's output and returns one line naming the
// failure.
func (o *clientOptions) finishBuild(cmd *cobra.Command, c *client, name string,
	stream buildStream) error {
	ctx := cmd.Context()
	v, err := followBuild(stream, cmd.ErrOrStderr())
	if err != nil {
		return c.callError(ctx, err)
	}
	if v == nil {
		return fmt.Errorf("pipeline %q: the master ended the build without a version", name)
	}

	if err := o.printVersion(cmd, v); err != nil {
		return err
	}
	if v.Status != "failed" {
		return nil
	}
	return buildFailure(name, v)
}

// followBuild copies progress lines to w as they come, so that the user
// watches the compile go on, and returns the version that ends the stream.
// A stream that ends without one returns nil.
func followBuild(stream buildStream, w io.Writer) (*kilnpb.Version, error) {
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if v := ev.GetVersion(); v != nil {
			return v, nil
		}
		fmt.Fprintln(w, strings.TrimRight(ev.GetProgress(), "\n"))
	}
}

// printVersion prints the version a build ended with. For a failed build
// people get the compiler's output on stderr, scripts the whole version.
func (o *clientOptions) printVersion(cmd *cobra.Command, v *kilnpb.Version) error {
	out := cmd.OutOrStdout()
	if o.wantJSON() {
		return writeJSON(out, newVersionJSON(v))
	}
	if v.Status == "failed" {
		return writeOutput(cmd.ErrOrStderr(), v.Output)
	}

	t := newTable(out)
	t.row("pipeline:", v.Pipeline)
	t.row("version:", version(v.Version))
	t.row("ref:", v.Ref)
	t.row("commit:", v.Commit)
	t.row("digest:", v.Digest)
	t.row("status:", v.Status)
	t.row("build:", buildTime(v))
	t.row("platform:", v.Goos+"/"+v.Goarch)
	t.row("jobs:", strings.Join(jobNames(v), ", "))
	return t.flush()
}

// writeOutput copies the compiler's output and ends it with a line break.
func writeOutput(w io.Writer, output string) error {
	if output == "" {
		return nil
	}
	_, err := io.WriteString(w, strings.TrimRight(output, "\n")+"\n")
	return err
}

// buildFailure is the line that ends a failed build.
func buildFailure(name string, v *kilnpb.Version) error {
	if v == nil {
		return fmt.Errorf("pipeline %q: the build failed", name)
	}
	// A failed create records nothing, so its version has no number; and
	// the master's errors name the pipeline already.
	msg := "the build failed"
	if v.Version != 0 {
		msg = fmt.Sprintf("version %d failed to build", v.Version)
	}
	if v.Error == "" {
		return fmt.Errorf("pipeline %q: %s", name, msg)
	}
	if strings.HasPrefix(v.Error, fmt.Sprintf("pipeline %q", name)) {
		return fmt.Errorf("%s (%s)", v.Error, msg)
	}
	return fmt.Errorf("pipeline %q: %s: %s", name, msg, v.Error)
}

// jobNames lists the jobs a version's program declares.
func jobNames(v *kilnpb.Version) []string {
	names := []string{}
	for _, j := range v.GetDescription().GetJobs() {
		names = append(names, j.Name)
	}
	return names
}

// versionJSON is a version for scripts (see doc.go).
type versionJSON struct {
	Pipeline string    `json:"pipeline"`
	Version  uint64    `json:"version"`
	Ref      string    `json:"ref"`
	Commit   string    `json:"commit"`
	Digest   string    `json:"digest"`
	Status   string    `json:"status"`
	BuildMs  int64     `json:"build_ms"`
	Reused   bool      `json:"reused"`
	Error    string    `json:"error"`
	Output   string    `json:"output"`
	Goos     string    `json:"goos"`
	Goarch   string    `json:"goarch"`
	Created  timestamp `json:"created"`
	Jobs     []string  `json:"jobs"`
}

func newVersionJSON(v *kilnpb.Version) versionJSON {
	return versionJSON{
		Pipeline: v.Pipeline,
		Version:  v.Version,
		Ref:      v.Ref,
		Commit:   v.Commit,
		Digest:   v.Digest,
		Status:   v.Status,
		BuildMs:  v.BuildMs,
		Reused:   v.Reused,
		Error:    v.Error,
		Output:   v.Output,
		Goos:     v.Goos,
		Goarch:   v.Goarch,
		Created:  timestamp(v.Created),
		Jobs:     jobNames(v),
	}
}
