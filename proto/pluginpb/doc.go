// Package pluginpb is the generated code of proto/plugin.proto: the
// protocol between a worker and a pipeline program. `make proto` writes it;
// pipelines get it with the SDK.
package pluginpb
