// Package sdk is what a pipeline program imports. A pipeline is a main
// package that declares its jobs as values and hands them to Serve:
//
//	func main() {
//		sdk.Serve(sdk.Pipeline{
//			Name: "build",
//			Jobs: []sdk.Job{
//				{Name: "vet", Run: vet},
//				{Name: "test", Run: test, DependsOn: []string{"vet"}},
//			},
//		})
//	}
//
// Serve speaks Kiln's plugin protocol through hashicorp/go-plugin. The
// program's stdout belongs to that protocol: a job writes its log through
// its J, never to os.Stdout.
package sdk

import (
	"context"
	"time"
)

// ProtocolVersion is the plugin protocol this SDK speaks. The master refuses
// a pipeline whose protocol it does not speak.
const ProtocolVersion = 1

// Version is the SDK's own version, reported to the master when it
// describes a pipeline.
const Version = "0.1.0"

// Pipeline is a pipeline program's declaration.
type Pipeline struct {
	// Name is what the program calls itself; the registry name may differ.
	Name string
	// Description is one line shown by `ci pipeline show`.
	Description string
	// Params are the parameters a run may set.
	Params []Param
	// Jobs form a directed acyclic graph through their DependsOn.
	Jobs []Job
}

// ParamType is the type of a parameter's value.
type ParamType string

// The parameter types. The zero value is String.
const (
	String ParamType = "string"
	Bool   ParamType = "bool"
	Choice ParamType = "choice"
)

// Param declares a run parameter.
type Param struct {
	Name        string
	Description string
	// Type is String when empty.
	Type ParamType
	// Default is the value a run gets when it does not set the parameter.
	Default string
	// Choices are the accepted values of a Choice parameter.
	Choices []string
}

// Job is one node of the pipeline's graph.
type Job struct {
	// Name is unique within the pipeline.
	Name        string
	Description string
	// DependsOn names the jobs that must succeed before this one starts.
	DependsOn []string
	// Timeout cancels the job's context after this long; zero means none.
	Timeout time.Duration
	// Retries is how many more attempts the job gets when its worker is
	// lost: zero means the master's default (2), a negative number none. A
	// job that fails by returning an error is not retried.
	Retries int
	// Labels a worker must carry to run the job.
	Labels map[string]string
	// Run does the work. Its context is cancelled on timeout or cancel.
	Run func(ctx context.Context, j *J) error
}
