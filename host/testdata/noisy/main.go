// A pipeline program that writes to stdout before it serves.
package main

import (
	"fmt"

	"github.com/kilnci/kiln/sdk"
)

func main() {
	fmt.Println("starting up!")
	sdk.Serve(sdk.Pipeline{Name: "noisy"})
}
