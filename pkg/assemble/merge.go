package assemble

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"knative.dev/pkg/kmap"
	"knative.dev/pkg/kmeta"

	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Volumes of a task's Tekton pod that stay one volume in the merged pod; every other
// volume is the task's own and gets the task's key in its name.
var sharedVolumes = map[string]bool{
	binVolume:                  true, // the entrypoint binary, copied once
	"tekton-internal-scripts":  true, // scripts have unique names across tasks
	"tekton-internal-downward": true, // the pod's own annotations
}

const (
	entrypointInPod   = "/tekton/bin/entrypoint"
	entrypointInImage = "/ko-app/entrypoint"
	// binVolume and binDir are Tekton's (unexported) entrypoint volume and its mount.
	binVolume = "tekton-internal-bin"
	binDir    = "/tekton/bin"
)

type merger struct {
	opts        Options
	first       *corev1.Pod
	ready       bool
	scripts     []string
	scriptsInit *corev1.Container
	inits       []corev1.Container
	containers  []corev1.Container
	volumes     []corev1.Volume
	haveVolume  map[string]bool
	names       map[string]string
}

func newMerger(opts Options) *merger {
	return &merger{opts: opts, ready: true, haveVolume: map[string]bool{}, names: map[string]string{}}
}

// add merges one task's Tekton pod into the pod and returns the task's plan entry.
func (m *merger) add(t compile.Task, p *corev1.Pod) (plan.Task, error) {
	if m.first == nil {
		m.first = p
	}
	if p.Annotations[plan.ReadyAnnotation] != plan.ReadyAnnotationValue {
		m.ready = false
	}
	vn := newVolumeNames(t)
	m.addVolumes(p.Spec.Volumes, vn)
	if err := m.addInitContainers(t.Key, p.Spec.InitContainers, vn); err != nil {
		return plan.Task{}, err
	}
	return m.addContainers(t, p.Spec.Containers, vn)
}

// volumeNames names a task's volumes in the merged pod: Tekton's per-task volumes
// (/tekton/home, /workspace, /tekton/results, ...) get the task's key, so no task can
// write another's; the pipeline's workspaces, pod template volumes, credentials and
// sharedVolumes keep their names, one volume for all tasks.
type volumeNames struct {
	key    string
	shared sets.Set[string]
}

func newVolumeNames(t compile.Task) volumeNames {
	shared := sets.New[string]()
	for _, v := range t.WorkspaceVolumes {
		shared.Insert(v)
	}
	if pt := t.TaskRun.Spec.PodTemplate; pt != nil {
		for _, v := range pt.Volumes {
			shared.Insert(v.Name)
		}
	}
	return volumeNames{key: t.Key, shared: shared}
}

func (vn volumeNames) name(name string) string {
	if sharedVolumes[name] || vn.shared.Has(name) || strings.HasPrefix(name, "tekton-internal-secret-volume-") {
		return name
	}
	return kmeta.ChildName(vn.key, "-"+name)
}

func (vn volumeNames) renameMounts(c *corev1.Container) {
	for i := range c.VolumeMounts {
		c.VolumeMounts[i].Name = vn.name(c.VolumeMounts[i].Name)
	}
}

// addVolumes adds a task's volumes, once each.
func (m *merger) addVolumes(volumes []corev1.Volume, vn volumeNames) {
	for _, v := range volumes {
		v.Name = vn.name(v.Name)
		if m.haveVolume[v.Name] {
			continue
		}
		m.haveVolume[v.Name] = true
		m.volumes = append(m.volumes, v)
	}
}

// addInitContainers keeps a task's own init containers; Tekton's prepare and
// place-scripts containers become the pod's preparation (ContainerInit or the
// reporter's postStart hook) and its one ContainerPlaceScripts.
func (m *merger) addInitContainers(key string, inits []corev1.Container, vn volumeNames) error {
	for _, c := range inits {
		switch c.Name {
		case pod.ContainerNamePrepare:
			// Replaced by the pod's own preparation.
		case pod.ContainerNamePlaceScripts:
			vn.renameMounts(&c)
			m.scripts = append(m.scripts, c.Args[len(c.Args)-1])
			if m.scriptsInit == nil {
				c.Name = ContainerPlaceScripts
				m.scriptsInit = c.DeepCopy()
			}
		default:
			vn.renameMounts(&c)
			c.Name = containerName(key, c.Name)
			if err := m.claim(c.Name, key); err != nil {
				return err
			}
			m.inits = append(m.inits, c)
		}
	}
	return nil
}

// addContainers adds a task's steps and sidecars, each run by the entrypoint against the
// plan, and returns the task's plan entry naming them.
func (m *merger) addContainers(t compile.Task, containers []corev1.Container, vn volumeNames) (plan.Task, error) {
	key := t.Key
	pt := t.Task
	pt.Steps, pt.Sidecars = nil, nil
	pipFlags := []string{"-pip_task", key, "-pip_plan", plan.PlanFile, "-pip_state", plan.StateDir}
	// Tekton's builder puts the steps first, then the sidecars; an unnamed sidecar's
	// container is called just "sidecar", so the position, not the name, tells them apart.
	steps := len(t.TaskRun.Spec.TaskSpec.Steps)
	for i, c := range containers {
		vn.renameMounts(&c)
		c.VolumeMounts = append(c.VolumeMounts, stateMounts(key)...)
		if i < steps {
			c = stepContainer(c, key, i, pipFlags)
			pt.Steps = append(pt.Steps, c.Name)
		} else {
			c = sidecarContainer(c, key, pipFlags)
			pt.Sidecars = append(pt.Sidecars, c.Name)
		}
		if err := m.claim(c.Name, key); err != nil {
			return plan.Task{}, err
		}
		m.containers = append(m.containers, c)
	}
	return pt, nil
}

// stateMounts let a container read the whole run's state and plan, and write its task's.
func stateMounts(key string) []corev1.VolumeMount {
	return []corev1.VolumeMount{
		{Name: stateVolume, MountPath: plan.StateDir, ReadOnly: true},
		{Name: stateVolume, MountPath: plan.StateDir + "/" + key, SubPath: key},
		{Name: planVolume, MountPath: plan.PlanDir, ReadOnly: true},
	}
}

// stepContainer is step i of a task, its entrypoint told which step of the plan it runs.
func stepContainer(c corev1.Container, key string, i int, pipFlags []string) corev1.Container {
	stepName := pod.TrimStepPrefix(c.Name)
	c.Name = containerName(key, stepName)
	// Tekton's prepare container links /tekton/steps/<step> to the step's run
	// directory, once per pod. Here /tekton/steps is the task's own volume and
	// each step's entrypoint links itself, so the task's steps may write it; the
	// run directories it points into stay read-only to other steps.
	for j := range c.VolumeMounts {
		if c.VolumeMounts[j].MountPath == pipeline.StepsDir {
			c.VolumeMounts[j].ReadOnly = false
		}
	}
	// The step's own name, for $(steps.<name>.…) and /tekton/steps/step-<name>.
	flags := append(append([]string{}, pipFlags...), "-pip_step", strconv.Itoa(i), "-pip_step_name", stepName)
	if strings.Contains(c.WorkingDir, "$(") {
		// Known only at run time: the entrypoint substitutes it and changes directory.
		flags = append(flags, "-pip_workdir", c.WorkingDir)
		c.WorkingDir = ""
	}
	c.Args = append(flags, c.Args...)
	return c
}

// sidecarContainer is a task's sidecar, wrapped by the entrypoint so it can be stopped
// when its task ends. A sidecar without command runs its image's, which the entrypoint
// reads from TEKTON_PLATFORM_COMMANDS (lookUpSidecarEntrypoints).
func sidecarContainer(c corev1.Container, key string, pipFlags []string) corev1.Container {
	c.Name = containerName(key, c.Name)
	args := append([]string{"-pip_mode", "sidecar"}, pipFlags...)
	if len(c.Command) > 0 {
		args = append(args, "-entrypoint", c.Command[0], "--")
		args = append(args, c.Command[1:]...)
	} else {
		args = append(args, "--")
	}
	args = append(args, c.Args...)
	c.Command, c.Args = []string{entrypointInPod}, args
	if !hasMount(c, binDir) {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: binVolume, MountPath: binDir, ReadOnly: true})
	}
	return c
}

// claim makes sure two tasks' containers never end up with one name (a task "a-b" with
// a step "c" and a task "a" with a step "b-c" would).
func (m *merger) claim(name, key string) error {
	if other, ok := m.names[name]; ok {
		return fmt.Errorf("container name %q of task %q is also a container of task %q; rename a task or step", name, key, other)
	}
	m.names[name] = key
	return nil
}

func hasMount(c corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path {
			return true
		}
	}
	return false
}

// pod is the one pod of the run: the tasks' containers and volumes, the pod's own init
// container and reporter, and the plan in an annotation its containers read.
func (m *merger) pod(ctx context.Context, c *compile.Compiled, encodedPlan string) (*corev1.Pod, error) {
	if m.first == nil {
		return nil, fmt.Errorf("spec.pipelineSpec.tasks: nothing to run")
	}
	annotations := map[string]string{plan.AnnotationPlan: encodedPlan}
	if m.ready {
		annotations[plan.ReadyAnnotation] = plan.ReadyAnnotationValue
	}
	spec := *m.first.Spec.DeepCopy()
	security := ownSecurityContext(ctx, spec)
	spec.InitContainers = m.initContainers(security)
	// The reporter first: the kubelet starts a pod's containers in order, its postStart
	// hook prepares the pod for the others (reporter), and a task starts as soon as its
	// own container has (docs/design.md, "Starting the first task"), so a reporter started
	// last would see the first tasks' transitions only after the fact, and tkn
	// pipelineinpod logs could not tell a retried task's attempts apart.
	spec.Containers = append([]corev1.Container{m.reporter(security, m.scriptsInit != nil)}, m.containers...)
	spec.Volumes = append(m.volumes, pipVolumes()...)
	spec.ServiceAccountName = c.ServiceAccountName
	spec.ActiveDeadlineSeconds = activeDeadline(c)
	// The pod's metadata is the child TaskRuns' (compile), ours over it.
	labels, propagated := c.PodMeta()
	meta := objectMeta(c.CustomRun, plan.PodName(c.CustomRun.Name, m.opts.Attempt), kmap.Union(map[string]string{pipeline.PipelineLabelKey: c.PipelineName}, labels))
	// Whether the pod starts ready is ours to say (sidecars), never a task's annotation.
	meta.Annotations = kmap.Union(kmap.ExcludeKeys(propagated, plan.ReadyAnnotation), annotations)
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: meta,
		Spec:       spec,
	}, nil
}

// ownSecurityContext is the securityContext of the pod's own containers (ContainerInit
// and the reporter, with its postStart hook): exactly what Tekton's pod builder gives its
// own init containers and its results sidecar (pkg/pod/pod.go entrypointInitContainer
// and createResultsSidecar, scripts.go, workingdir_init.go), and only when Tekton's
// set-security-context flag is on, read the same way. Tekton's place-scripts and
// working-dir init containers, kept as the builder made them, follow the same flag, so
// every container that is ours or Tekton's carries one rule.
//
// Why not always: the restricted context says runAsNonRoot, which the kubelet enforces
// at start, and a pod template may run the pod as root (runAsUser: 0). Without the flag
// Tekton's own init containers carry nothing either, so a TaskRun's pod cannot pass the
// restricted profile; ours then add no refusal that a Tekton pod of the same tasks
// would not have, and never keep a pod that runs today from starting. With the flag they
// are restricted-compliant in every field (allowPrivilegeEscalation, capabilities,
// runAsNonRoot, seccompProfile; readOnlyRootFilesystem under
// set-security-context-read-only-root-filesystem: they write only to their volumes), and
// the entrypoint image runs as a non-root user (uid 65532, .ko.yaml's base), so
// runAsNonRoot never stops them from starting where Tekton's would start: they are never
// the cause of a refusal. A pod whose node selector asks for Windows gets Tekton's
// Windows context, as Tekton decides it from the TaskRun's pod template (usesWindows).
func ownSecurityContext(ctx context.Context, spec corev1.PodSpec) *corev1.SecurityContext {
	flags := config.FromContextOrDefaults(ctx).FeatureFlags
	sc := pod.SecurityContextConfig{
		SetSecurityContext:        flags.SetSecurityContext,
		SetReadOnlyRootFilesystem: flags.SetSecurityContextReadOnlyRootFilesystem,
	}
	if !sc.SetSecurityContext {
		return nil
	}
	// A copy: Tekton returns its package-level LinuxSecurityContext itself.
	return sc.GetSecurityContext(spec.NodeSelector[pod.OsSelectorLabel] == "windows").DeepCopy()
}

// initContainers are the pod's init containers: Tekton's place-scripts for all tasks'
// scripts, preceded by ContainerInit (prepare), then the tasks' own. place-scripts runs
// the entrypoint (decode-script), so a pod with scripts prepares in an init container
// before it; a pod without them prepares in the reporter's postStart hook (reporter).
func (m *merger) initContainers(security *corev1.SecurityContext) []corev1.Container {
	var inits []corev1.Container
	if m.scriptsInit != nil {
		inits = append(inits, corev1.Container{
			Name:    ContainerInit,
			Image:   m.opts.EntrypointImage,
			Command: []string{entrypointInImage},
			Args:    prepare,
			// As Tekton's prepare container: the image's working directory may be one only
			// its own user (65532) can enter, and a pod template may choose another.
			WorkingDir:      "/",
			SecurityContext: security,
			VolumeMounts:    prepareMounts(),
		})
		s := m.scriptsInit
		s.Args = append(append([]string{}, s.Args[:len(s.Args)-1]...), strings.Join(m.scripts, "\n"))
		inits = append(inits, *s)
	}
	return append(inits, m.inits...)
}

// prepare is the entrypoint's init mode: the binary every other container runs, the
// pipeline's start, the tasks' state directories.
var prepare = []string{"-pip_mode", "init", "-pip_plan", plan.PlanFile, "-pip_state", plan.StateDir, "-pip_bin", entrypointInPod}

func prepareMounts() []corev1.VolumeMount {
	return []corev1.VolumeMount{
		{Name: binVolume, MountPath: binDir},
		{Name: stateVolume, MountPath: plan.StateDir},
		{Name: planVolume, MountPath: plan.PlanDir, ReadOnly: true},
	}
}

// reporter is the container that streams the tasks' states to its log for the
// controller. Unless an init container did (initContainers), its postStart hook
// prepares the pod. The kubelet starts a pod's containers one at a time, in order, and
// starts the next only once the previous one's postStart hook has returned (what
// Istio's holdApplicationUntilProxyStarts relies on), so every task's container starts
// on a prepared pod. An init container costs a kubelet sync more: the kubelet learns
// that it ended only from its next relist, up to a second later (docs/design.md,
// "Preparing the pod").
func (m *merger) reporter(security *corev1.SecurityContext, prepared bool) corev1.Container {
	c := corev1.Container{
		Name:            plan.ReporterContainer,
		Image:           m.opts.EntrypointImage,
		Command:         []string{entrypointInImage},
		Args:            []string{"-pip_mode", "report", "-pip_plan", plan.PlanFile, "-pip_state", plan.StateDir},
		WorkingDir:      "/",
		SecurityContext: security,
		VolumeMounts: []corev1.VolumeMount{
			{Name: stateVolume, MountPath: plan.StateDir, ReadOnly: true},
			{Name: planVolume, MountPath: plan.PlanDir, ReadOnly: true},
		},
	}
	if !prepared {
		c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: append([]string{entrypointInImage}, prepare...),
		}}}
		c.VolumeMounts = prepareMounts()
	}
	return c
}

// pipVolumes are the pod's own: the run's state, and the plan read from the pod's
// annotation.
func pipVolumes() []corev1.Volume {
	return []corev1.Volume{
		{Name: stateVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: planVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "plan.json",
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: fmt.Sprintf("metadata.annotations['%s']", plan.AnnotationPlan)},
			}},
		}}},
	}
}
