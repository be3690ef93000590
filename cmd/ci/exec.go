package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kilnci/kiln/host"
	"github.com/kilnci/kiln/local"
	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/proto/pluginpb"
	"github.com/kilnci/kiln/registry"
	"github.com/kilnci/kiln/server"
	"github.com/kilnci/kiln/worker"
)

type execOptions struct {
	clientOptions
	params  []string
	slots   int
	goproxy string
}

func newExecCommand(e *env) *cobra.Command {
	o := &execOptions{clientOptions: newClientOptions(e)}
	cmd := &cobra.Command{
		Use:   "exec [DIR]",
		Short: "Compile and run a pipeline on this machine, without a master",
		Long: "Compile the pipeline program in DIR (default: the current folder) against " +
			"this ci's SDK and run all its jobs here, each line of their logs prefixed " +
			"with the job's name. Exits non-zero when the run fails.",
		Args: wantArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			return o.run(cmd, dir)
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&o.params, "param", nil, "a run parameter as NAME=VALUE (repeatable)")
	fs.IntVar(&o.slots, "slots", 4, "how many jobs run at once")
	fs.StringVar(&o.goproxy, "goproxy", "off", "GOPROXY for the build; off uses the module cache only")
	fs.VarP(&o.output, "output", "o", "output format of the summary: table or json")
	return cmd
}

func (o *execOptions) run(cmd *cobra.Command, dir string) error {
	given, err := parseParams(o.params)
	if err != nil {
		return usageErrorf(cmd, "%v", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return fmt.Errorf("pipeline folder %s does not exist", dir)
	}
	scratch, err := execScratch()
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()

	bin, digest, err := o.compile(cmd.Context(), abs, scratch, stderr)
	if err != nil {
		return err
	}
	d, err := describe(cmd.Context(), bin, digest)
	if err != nil {
		return err
	}
	params, err := server.ResolveParams(d.Name, d.Params, given)
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp(scratch, "run-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	facts := gitFacts(abs, d.Name)
	warnCheckout(stderr, abs, facts)
	fmt.Fprintf(stderr, "running %s: %d jobs\n", d.Name, len(d.Jobs))
	run, err := local.Run(cmd.Context(), local.Config{
		Binary: bin, Digest: digest, Description: d, Params: params, Facts: facts,
		Slots: o.slots, WorkDir: work, Env: worker.DefaultEnv(), Out: cmd.OutOrStdout(),
	})
	if err != nil {
		return err
	}
	return o.summary(cmd, server.RunProto(run))
}

// compile builds the program into the scratch folder and returns its path
// and digest.
func (o *execOptions) compile(ctx context.Context, dir, scratch string,
	progress io.Writer) (string, string, error) {
	b, err := registry.NewBuilder(registry.BuildConfig{Dir: scratch, GOPROXY: o.goproxy})
	if err != nil {
		return "", "", err
	}
	bin := filepath.Join(scratch, "pipeline")
	fmt.Fprintf(progress, "compiling %s\n", dir)
	out, err := b.Compile(ctx, dir, bin, func(line string) { fmt.Fprintln(progress, line) })
	if err != nil {
		if out != "" {
			fmt.Fprint(progress, out)
		}
		return "", "", err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(data)
	return bin, "sha256:" + hex.EncodeToString(sum[:]), nil
}

// describe asks the program for its graph and checks it as the master would.
func describe(ctx context.Context, bin, digest string) (*pluginpb.Description, error) {
	p, err := host.Start(ctx, host.Config{Path: bin, Digest: digest, Env: worker.DefaultEnv()})
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	d, err := p.Describe(ctx)
	if err != nil {
		return nil, err
	}
	return d, registry.CheckDescription(d)
}

func (o *execOptions) summary(cmd *cobra.Command, r *kilnpb.Run) error {
	out := cmd.OutOrStdout()
	if o.wantJSON() {
		if err := writeJSON(out, newRunJSON(r)); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(out)
		if err := o.printJobs(out, r); err != nil {
			return err
		}
	}
	if r.Status != "succeeded" {
		return fmt.Errorf("pipeline %s %s: %s", r.Pipeline, r.Status, r.Reason)
	}
	return nil
}

// execScratch is the folder for ci exec's builds and workspaces.
func execScratch() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "kiln", "exec")
	return dir, os.MkdirAll(dir, 0o755)
}

// warnCheckout says what a job's Checkout will give: the last commit, not
// the working tree that was compiled.
func warnCheckout(w io.Writer, dir string, facts *pluginpb.RunFacts) {
	if facts.Commit == "" {
		fmt.Fprintln(w, "note: not in a git repository, so jobs cannot check out a source")
		return
	}
	out, err := exec.Command("git", "-C", dir, "status", "--porcelain").Output()
	if err == nil && len(strings.TrimSpace(string(out))) > 0 {
		fmt.Fprintf(w, "note: jobs check out commit %s; uncommitted changes are not in it\n",
			facts.Commit[:12])
	}
}

// gitFacts fills in the source and commit of a folder inside a git
// repository, so that a job's Checkout works under ci exec too.
func gitFacts(dir, pipeline string) *pluginpb.RunFacts {
	facts := &pluginpb.RunFacts{RunId: 1, Pipeline: pipeline}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--show-toplevel", "HEAD").Output()
	if err != nil {
		return facts
	}
	lines := strings.Fields(string(out))
	if len(lines) == 2 {
		facts.Source, facts.Commit = lines[0], lines[1]
		if rel, err := filepath.Rel(lines[0], dir); err == nil && rel != "." {
			facts.Dir = rel
		}
	}
	return facts
}
