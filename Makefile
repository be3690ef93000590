GOBIN ?= $(shell go env GOPATH)/bin

.PHONY: proto
proto:
	go install github.com/bufbuild/buf/cmd/buf@v1.75.0
	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	cd proto && PATH="$(GOBIN):$$PATH" buf generate
