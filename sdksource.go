// Package kiln carries the source of the pipeline SDK that this build of
// Kiln speaks, so that a master installed as a single binary can build
// pipelines offline against exactly its own SDK.
package kiln

//go:generate sh -c "go run ./internal/sdkmod > sdk.go.mod"

import "embed"

// SDKSource holds the packages a pipeline program imports: sdk and the
// plugin protocol it serves. The registry writes them out, with SDKGoMod as
// their go.mod, and builds pipelines against that copy.
//
//go:embed sdk/*.go proto/pluginpb/*.go
var SDKSource embed.FS

// SDKGoMod is the go.mod of the written-out SDK: the requirements of the
// packages in SDKSource and nothing else. `go generate` refreshes it, and a
// test checks that it matches the build.
//
//go:embed sdk.go.mod
var SDKGoMod []byte

// ModulePath is the module path pipeline programs require.
const ModulePath = "github.com/kilnci/kiln"
