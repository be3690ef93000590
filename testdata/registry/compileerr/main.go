// A pipeline that does not compile, and requires an SDK version that this
// Kiln does not carry.
package main

import "github.com/kilnci/kiln/sdk"

func main() {
	sdk.Serve(sdk.Pipeline{Name: "compileerr", Jobs: undefinedJobs})
}
