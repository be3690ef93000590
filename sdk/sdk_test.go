package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDescribeCarriesTheDeclaration(t *testing.T) {
	t.Parallel()
	d := Describe(Pipeline{
		Name: "p", Description: "d",
		Params: []Param{{Name: "race", Type: Bool, Default: "false"}, {Name: "note"}},
		Jobs: []Job{
			{Name: "a", Timeout: 90 * time.Second, Retries: -1, Labels: map[string]string{"gpu": "1"}},
			{Name: "b", DependsOn: []string{"a"}},
		},
	})
	if d.Name != "p" || d.SdkProtocol != ProtocolVersion || d.SdkVersion != Version {
		t.Fatalf("header = %v", d)
	}
	if d.Params[1].Type != "string" {
		t.Errorf("a parameter without a type is %q, want string", d.Params[1].Type)
	}
	a, b := d.Jobs[0], d.Jobs[1]
	if a.TimeoutMs != 90000 || a.Retries != -1 || a.Labels["gpu"] != "1" ||
		len(b.DependsOn) != 1 || b.DependsOn[0] != "a" {
		t.Fatalf("jobs = %v", d.Jobs)
	}
}

func TestRunJobTurnsPanicsAndIgnoredCancelsIntoErrors(t *testing.T) {
	t.Parallel()
	j := &J{outputs: map[string]string{}}
	err := runJob(context.Background(), Job{Name: "boom", Run: func(context.Context, *J) error {
		panic("kaboom")
	}}, j)
	if err == nil || !strings.Contains(err.Error(), `job "boom" panicked: kaboom`) {
		t.Fatalf("panic: err = %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = runJob(ctx, Job{Name: "deaf", Run: func(context.Context, *J) error { return nil }}, j)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a job that returned nil after its cancel: err = %v", err)
	}
	if err := runJob(context.Background(), Job{Name: "none"}, j); err == nil {
		t.Fatal("a job without Run passed")
	}
}
