package assemble

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/kmeta"
)

// Volumes of a task's Tekton pod that stay one volume in the merged pod; every other
// volume is the task's own and gets the task's key in its name.
var sharedVolumes = map[string]bool{
	"tekton-internal-bin":      true, // the entrypoint binary, copied once
	"tekton-internal-scripts":  true, // scripts have unique names across tasks
	"tekton-internal-downward": true, // the pod's own annotations
}

const (
	readyAnnotation      = "tekton.dev/ready"
	readyAnnotationValue = "READY"
	entrypointInPod      = "/tekton/bin/entrypoint"
	entrypointInImage    = "/ko-app/entrypoint"
	binDir               = "/tekton/bin"
	stepsDir             = "/tekton/steps"
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

func (m *merger) add(t compile.Task, p *corev1.Pod) (plan.Task, error) {
	key := t.Key
	if m.first == nil {
		m.first = p
	}
	if p.Annotations[readyAnnotation] != readyAnnotationValue {
		m.ready = false
	}
	shared := map[string]bool{}
	for _, v := range t.WorkspaceVolumes {
		shared[v] = true
	}
	if pt := t.TaskRun.Spec.PodTemplate; pt != nil {
		for _, v := range pt.Volumes {
			shared[v.Name] = true
		}
	}
	rename := func(name string) string {
		if sharedVolumes[name] || shared[name] || strings.HasPrefix(name, "tekton-internal-secret-volume-") {
			return name
		}
		return kmeta.ChildName(key, "-"+name)
	}
	renameMounts := func(c *corev1.Container) {
		for i := range c.VolumeMounts {
			c.VolumeMounts[i].Name = rename(c.VolumeMounts[i].Name)
		}
	}
	for _, v := range p.Spec.Volumes {
		v.Name = rename(v.Name)
		if m.haveVolume[v.Name] {
			continue
		}
		m.haveVolume[v.Name] = true
		m.volumes = append(m.volumes, v)
	}
	for _, c := range p.Spec.InitContainers {
		switch c.Name {
		case pod.ContainerNamePrepare:
			// Replaced by the one ContainerInit of the pod.
		case "place-scripts":
			renameMounts(&c)
			m.scripts = append(m.scripts, c.Args[len(c.Args)-1])
			if m.scriptsInit == nil {
				c.Name = ContainerPlaceScripts
				m.scriptsInit = c.DeepCopy()
			}
		default:
			renameMounts(&c)
			c.Name = containerName(key, c.Name)
			if err := m.claim(c.Name, key); err != nil {
				return plan.Task{}, err
			}
			m.inits = append(m.inits, c)
		}
	}
	pt := t.Task
	pt.Steps, pt.Sidecars = nil, nil
	stateMounts := []corev1.VolumeMount{
		{Name: stateVolume, MountPath: plan.StateDir, ReadOnly: true},
		{Name: stateVolume, MountPath: plan.StateDir + "/" + key, SubPath: key},
		{Name: planVolume, MountPath: plan.PlanDir, ReadOnly: true},
	}
	pipFlags := []string{"-pip_task", key, "-pip_plan", plan.PlanFile, "-pip_state", plan.StateDir}
	// Tekton's builder puts the steps first, then the sidecars; an unnamed sidecar's
	// container is called just "sidecar", so the position, not the name, tells them apart.
	steps := len(t.TaskRun.Spec.TaskSpec.Steps)
	step := 0
	for i, c := range p.Spec.Containers {
		renameMounts(&c)
		c.VolumeMounts = append(c.VolumeMounts, stateMounts...)
		if i >= steps {
			c.Name = containerName(key, c.Name)
			args := append(append([]string{"-pip_mode", "sidecar"}, pipFlags...), "-entrypoint", c.Command[0], "--")
			args = append(append(args, c.Command[1:]...), c.Args...)
			c.Command, c.Args = []string{entrypointInPod}, args
			if !hasMount(c, binDir) {
				c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "tekton-internal-bin", MountPath: binDir, ReadOnly: true})
			}
			pt.Sidecars = append(pt.Sidecars, c.Name)
		} else {
			stepName := strings.TrimPrefix(c.Name, "step-")
			c.Name = containerName(key, stepName)
			// Tekton's prepare container links /tekton/steps/<step> to the step's run
			// directory, once per pod. Here /tekton/steps is the task's own volume and
			// each step's entrypoint links itself, so the task's steps may write it; the
			// run directories it points into stay read-only to other steps.
			for i := range c.VolumeMounts {
				if c.VolumeMounts[i].MountPath == stepsDir {
					c.VolumeMounts[i].ReadOnly = false
				}
			}
			// The step's own name, for $(steps.<name>.…) and /tekton/steps/step-<name>.
			flags := append(append([]string{}, pipFlags...), "-pip_step", strconv.Itoa(step), "-pip_step_name", stepName)
			if strings.Contains(c.WorkingDir, "$(") {
				// Known only at run time: the entrypoint substitutes it and changes directory.
				flags = append(flags, "-pip_workdir", c.WorkingDir)
				c.WorkingDir = ""
			}
			c.Args = append(flags, c.Args...)
			pt.Steps = append(pt.Steps, c.Name)
			step++
		}
		if err := m.claim(c.Name, key); err != nil {
			return plan.Task{}, err
		}
		m.containers = append(m.containers, c)
	}
	return pt, nil
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

func (m *merger) pod(c *compile.Compiled, encodedPlan string, attempt int) (*corev1.Pod, error) {
	cr := c.CustomRun
	if m.first == nil {
		return nil, fmt.Errorf("spec.pipelineSpec.tasks: nothing to run")
	}
	binMount := corev1.VolumeMount{Name: "tekton-internal-bin", MountPath: binDir}
	stateRW := corev1.VolumeMount{Name: stateVolume, MountPath: plan.StateDir}
	planRO := corev1.VolumeMount{Name: planVolume, MountPath: plan.PlanDir, ReadOnly: true}
	inits := []corev1.Container{{
		Name:         ContainerInit,
		Image:        m.opts.EntrypointImage,
		Command:      []string{entrypointInImage},
		Args:         []string{"-pip_mode", "init", "-pip_plan", plan.PlanFile, "-pip_state", plan.StateDir, "-pip_bin", entrypointInPod},
		VolumeMounts: []corev1.VolumeMount{binMount, stateRW, planRO},
	}}
	if m.scriptsInit != nil {
		s := m.scriptsInit
		s.Args = append(append([]string{}, s.Args[:len(s.Args)-1]...), strings.Join(m.scripts, "\n"))
		inits = append(inits, *s)
	}
	inits = append(inits, m.inits...)
	containers := append(m.containers, corev1.Container{
		Name:         plan.ReporterContainer,
		Image:        m.opts.EntrypointImage,
		Command:      []string{entrypointInImage},
		Args:         []string{"-pip_mode", "report", "-pip_plan", plan.PlanFile, "-pip_state", plan.StateDir},
		VolumeMounts: []corev1.VolumeMount{{Name: stateVolume, MountPath: plan.StateDir, ReadOnly: true}, planRO},
	})
	volumes := append(m.volumes,
		corev1.Volume{Name: stateVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: planVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "plan.json",
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: fmt.Sprintf("metadata.annotations['%s']", plan.AnnotationPlan)},
			}},
		}}},
	)
	annotations := map[string]string{plan.AnnotationPlan: encodedPlan}
	if m.ready {
		annotations[readyAnnotation] = readyAnnotationValue
	}
	spec := *m.first.Spec.DeepCopy()
	spec.InitContainers, spec.Containers, spec.Volumes = inits, containers, volumes
	spec.ServiceAccountName = c.ServiceAccountName
	spec.ActiveDeadlineSeconds = activeDeadline(c)
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      PodName(cr.Name, attempt),
			Namespace: cr.Namespace,
			Labels: map[string]string{
				"tekton.dev/customRun":         cr.Name,
				pipeline.PipelineLabelKey:      c.PipelineName,
				"app.kubernetes.io/managed-by": v1alpha1.ManagedBy,
			},
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(cr)},
		},
		Spec: spec,
	}, nil
}
