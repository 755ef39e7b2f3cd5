// Command tkn-pipelineinpod is PipelineInPod's tkn plugin: on PATH, tkn runs it as
// `tkn pipelineinpod`; it works the same on its own.
//
//	tkn pipelineinpod logs CUSTOMRUN [TASK...] [-f] [--all] [-n NAMESPACE]
//	tkn pipelineinpod describe CUSTOMRUN [-n NAMESPACE]
//	tkn pipelineinpod start -f PIPELINERUN.yaml [--follow] [-n NAMESPACE]
//
// See pkg/tknplugin.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pipelineinpod/pipelineinpod/pkg/tknplugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := tknplugin.Main(ctx, tknplugin.Env{Stdout: os.Stdout, Stderr: os.Stderr, Connect: tknplugin.Connect}, os.Args[1:])
	stop()
	os.Exit(code)
}
