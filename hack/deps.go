//go:build tools

package hack

import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	_ "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	_ "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/client"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/pipeline"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/reconciler/pipeline/v1beta1/customrun"
	_ "github.com/tektoncd/pipeline/pkg/entrypoint"
	_ "github.com/tektoncd/pipeline/pkg/pod"
	_ "github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	_ "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	_ "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	_ "github.com/tektoncd/pipeline/pkg/remoteresolution/resolver/framework"
	_ "k8s.io/client-go/kubernetes"
	_ "knative.dev/pkg/injection/sharedmain"
	_ "sigs.k8s.io/yaml"
)
