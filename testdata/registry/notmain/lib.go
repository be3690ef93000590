// A library, not a pipeline program.
package lib

import "github.com/kilnci/kiln/sdk"

// Pipeline is declared but never served.
var Pipeline = sdk.Pipeline{Name: "notmain"}
