module example.com/protocol

go 1.25.0

require (
	github.com/hashicorp/go-plugin v1.8.0
	github.com/kilnci/kiln v0.1.0
	google.golang.org/grpc v1.85.0
)
