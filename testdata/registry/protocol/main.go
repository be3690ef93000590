// A program that serves the pipeline protocol by hand and claims a plugin
// protocol that no Kiln speaks, to test that the registry refuses it.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/kilnci/kiln/proto/pluginpb"
	"github.com/kilnci/kiln/sdk"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: &future{}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

type future struct {
	plugin.NetRPCUnsupportedPlugin
	pluginpb.UnimplementedPipelineServer
}

func (f *future) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPipelineServer(s, f)
	return nil
}

func (f *future) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func (f *future) Describe(context.Context,
	*pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	return &pluginpb.Description{Name: "protocol", SdkProtocol: 99, SdkVersion: "9.0.0"}, nil
}
