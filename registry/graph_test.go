package registry

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kilnci/kiln/proto/pluginpb"
	"github.com/kilnci/kiln/sdk"
)

// jobs builds a description from "name:dep,dep" specs.
func jobs(specs ...string) *pluginpb.Description {
	d := &pluginpb.Description{SdkProtocol: sdk.ProtocolVersion, SdkVersion: sdk.Version}
	for _, s := range specs {
		name, deps, _ := strings.Cut(s, ":")
		j := &pluginpb.JobSpec{Name: name}
		if deps != "" {
			j.DependsOn = strings.Split(deps, ",")
		}
		d.Jobs = append(d.Jobs, j)
	}
	return d
}

func TestValidateGraphNamesTheJobsAtFault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    *pluginpb.Description
		want []string // substrings of the error; none means valid
	}{
		{"no jobs", jobs(), []string{"declares no jobs"}},
		{"diamond", jobs("a", "b:a", "c:a", "d:b,c"), nil},
		{"dependency declared later", jobs("test:build", "build"), nil},
		{"empty name", jobs("a", ""), []string{"job #2 has no name"}},
		{"duplicate", jobs("build", "test:build", "build", "build"),
			[]string{`job "build" (3 times) is declared more than once`}},
		{"missing dependency", jobs("build", "test:bulid"),
			[]string{`job "test" depends on "bulid", which is not a job of the pipeline`}},
		{"self cycle", jobs("a:a"), []string{"jobs form a cycle: a -> a"}},
		{"cycle", jobs("prepare", "lint:prepare,test", "test:package", "package:lint"),
			[]string{"jobs form a cycle: lint -> test -> package -> lint"}},
		{"several problems", jobs("a", "a", "b:zz"),
			[]string{`job "a" (2 times)`, `job "b" depends on "zz"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateGraph(tt.d)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("ValidateGraph = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidGraph) {
				t.Fatalf("ValidateGraph = %v, want ErrInvalidGraph", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestCheckDescriptionRefusesAnotherProtocol(t *testing.T) {
	t.Parallel()
	d := jobs("a")
	d.SdkProtocol, d.SdkVersion = sdk.ProtocolVersion+1, "9.9.9"

	err := CheckDescription(d)

	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("CheckDescription = %v, want ErrProtocol", err)
	}
	for _, w := range []string{
		fmt.Sprintf("protocol %d (SDK 9.9.9)", sdk.ProtocolVersion+1),
		fmt.Sprintf("speaks %d (SDK %s)", sdk.ProtocolVersion, sdk.Version),
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

func TestCheckDescriptionRefusesParametersNoRunCouldSet(t *testing.T) {
	t.Parallel()
	one := []*pluginpb.JobSpec{{Name: "a"}}
	tests := []struct {
		param *pluginpb.Param
		want  string
	}{
		{&pluginpb.Param{Name: "race", Type: "bool", Default: "maybe"}, `has default "maybe"`},
		{&pluginpb.Param{Name: "c", Type: "choice"}, `"c" has no choices`},
		{&pluginpb.Param{Name: "c", Type: "choice", Choices: []string{"a"}, Default: "b"},
			`which is not one of a`},
		{&pluginpb.Param{Name: "n", Type: "integer"}, `use string, bool or choice`},
		{&pluginpb.Param{Name: "ok", Type: "choice", Choices: []string{"a", "b"}, Default: "b"}, ""},
	}
	for _, tt := range tests {
		d := &pluginpb.Description{SdkProtocol: 1, Jobs: one, Params: []*pluginpb.Param{tt.param}}
		err := CheckDescription(d)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%v: err = %v, want %q", tt.param, err, tt.want)
		}
	}
	dup := &pluginpb.Description{SdkProtocol: 1, Jobs: one, Params: []*pluginpb.Param{
		{Name: "x", Type: "string"}, {Name: "x", Type: "string"}}}
	if err := CheckDescription(dup); err == nil || !strings.Contains(err.Error(), "more than once") {
		t.Errorf("duplicate parameter: err = %v", err)
	}
}
