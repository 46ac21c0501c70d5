package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// objects are the typed objects of the manifests, by kind and name.
type objects struct {
	jobs        map[string]*batchv1.Job
	services    map[string]*corev1.Service
	deployments map[string]*appsv1.Deployment
}

// load unmarshals every document of every manifest strictly (an unknown or misspelt field fails)
// into the typed Kubernetes API structs.
func load(t *testing.T) objects {
	t.Helper()
	o := objects{jobs: map[string]*batchv1.Job{}, services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{}}
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			where := fmt.Sprintf("%s, document %d", f, i+1)
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj interface{ GetName() string }
			switch head.APIVersion + " " + head.Kind {
			case "batch/v1 Job":
				j := &batchv1.Job{}
				obj, err = j, yaml.UnmarshalStrict(doc, j)
				o.jobs[j.Name] = j
			case "v1 Service":
				s := &corev1.Service{}
				obj, err = s, yaml.UnmarshalStrict(doc, s)
				o.services[s.Name] = s
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				obj, err = d, yaml.UnmarshalStrict(doc, d)
				o.deployments[d.Name] = d
			default:
				t.Fatalf("%s: unexpected %s %s", where, head.APIVersion, head.Kind)
			}
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if obj.GetName() == "" {
				t.Fatalf("%s: no metadata.name", where)
			}
		}
	}
	return o
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// flag returns the value of --name=value in args.
func flag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestTrainingJob(t *testing.T) {
	o := load(t)
	j, svc := o.jobs["protoherb-train"], o.services["protoherb-train"]
	if j == nil || svc == nil {
		t.Fatal("want the Job and the headless Service protoherb-train")
	}
	s := j.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Fatal("the training Job must be Indexed: JOB_COMPLETION_INDEX is each pod's rank")
	}
	c := s.Template.Spec.Containers[0]
	world, err := strconv.Atoi(env(c, "WORLD_SIZE"))
	if err != nil || s.Completions == nil || s.Parallelism == nil || *s.Completions != int32(world) || *s.Parallelism != int32(world) {
		t.Fatalf("WORLD_SIZE %q, completions %v, parallelism %v: all pods of a rendezvous run at once", env(c, "WORLD_SIZE"), s.Completions, s.Parallelism)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || s.Template.Spec.Subdomain != svc.Name {
		t.Fatalf("the pods need stable names: a headless Service (clusterIP None, got %q) named as the pods' subdomain (%q)", svc.Spec.ClusterIP, s.Template.Spec.Subdomain)
	}
	if want := j.Name + "-0." + svc.Name; env(c, "MASTER_ADDR") != want {
		t.Fatalf("MASTER_ADDR %q, want pod 0's name %q", env(c, "MASTER_ADDR"), want)
	}
	for k, v := range svc.Spec.Selector {
		if s.Template.Labels[k] != v {
			t.Fatalf("the Service selects %s=%s, which the pods do not carry", k, v)
		}
	}
	port := env(c, "MASTER_PORT")
	if len(svc.Spec.Ports) == 0 || strconv.Itoa(int(svc.Spec.Ports[0].Port)) != port || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Fatalf("MASTER_PORT %s must be the Service's and the container's port", port)
	}
	if len(c.Args) == 0 || (c.Args[0] != "train" && c.Args[0] != "pretrain") || c.Command[0] != "protoherb" {
		t.Fatalf("command %v %v: want protoherb train|pretrain", c.Command, c.Args)
	}
	eps, _ := flag(c.Args, "episodes-per-step")
	if n, err := strconv.Atoi(eps); c.Args[0] == "train" && (err != nil || n%world != 0) {
		t.Fatalf("--episodes-per-step %q must be a multiple of WORLD_SIZE %d", eps, world)
	}
	if _, ok := flag(c.Args, "run-dir"); !ok {
		t.Fatal("no --run-dir")
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Fatal("a failed rank must not restart alone into a finished rendezvous")
	}
}

func TestPrototypeShardJobs(t *testing.T) {
	o := load(t)
	j, merge := o.jobs["protoherb-prototypes"], o.jobs["protoherb-prototypes-merge"]
	if j == nil || merge == nil {
		t.Fatal("want the Jobs protoherb-prototypes and protoherb-prototypes-merge")
	}
	if j.Spec.CompletionMode == nil || *j.Spec.CompletionMode != batchv1.IndexedCompletion {
		t.Fatal("the shard Job must be Indexed")
	}
	c := j.Spec.Template.Spec.Containers[0]
	shards, _ := flag(c.Args, "shards")
	if n, err := strconv.Atoi(shards); err != nil || j.Spec.Completions == nil || int32(n) != *j.Spec.Completions {
		t.Fatalf("--shards %q must equal completions %v", shards, j.Spec.Completions)
	}
	out, _ := flag(c.Args, "out")
	if c.Args[0] != "prototypes" || !strings.Contains(out, "{shard}") {
		t.Fatalf("args %v: want prototypes with --out naming {shard}", c.Args)
	}
	script := strings.Join(merge.Spec.Template.Spec.Containers[0].Args, " ")
	pattern := strings.Replace(out, "{shard}", "[0-9]*", 1)
	if !strings.Contains(script, "prototypes merge") || !strings.Contains(script, pattern) {
		t.Fatalf("the merge Job runs %q: want prototypes merge over %s", script, pattern)
	}
	m, ok := flag(strings.Fields(script), "out")
	if match, _ := filepath.Match(pattern, m); !ok || match {
		t.Fatalf("merged output %q (--out=) must not match the shards' pattern %s", m, pattern)
	}
}

func TestServeDeployment(t *testing.T) {
	o := load(t)
	d, svc := o.deployments["protoherb-serve"], o.services["protoherb-serve"]
	if d == nil || svc == nil {
		t.Fatal("want the Deployment and Service protoherb-serve")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Args[0] != "serve" {
		t.Fatalf("args %v: want serve", c.Args)
	}
	addr, _ := flag(c.Args, "addr")
	port := int32(c.Ports[0].ContainerPort)
	if !strings.HasSuffix(addr, ":"+strconv.Itoa(int(port))) || strings.HasPrefix(addr, "127.") {
		t.Fatalf("--addr %q must listen beyond loopback on the container port %d", addr, port)
	}
	if _, ok := flag(c.Args, "token-file"); !ok {
		t.Fatal("serving off loopback needs --token-file (or --open-enrolment)")
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.IntValue() != int(port) {
			t.Fatalf("%s probe %+v: want GET /healthz on port %d", name, p, port)
		}
	}
	if len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].TargetPort.IntValue() != int(port) {
		t.Fatalf("the Service must target port %d", port)
	}
	sel := d.Spec.Selector.MatchLabels
	if !slices.Equal(mapKeys(sel), mapKeys(svc.Spec.Selector)) || d.Spec.Template.Labels["app"] != sel["app"] {
		t.Fatal("the Deployment's selector, its pods' labels and the Service's selector must agree")
	}
}

func mapKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
