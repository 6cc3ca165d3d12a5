// Package deploy holds the container image definition (Dockerfile) and the Kubernetes manifests
// of ppml serve (kubernetes/); its tests check them against the code, since no container
// runtime or cluster runs them here.
package deploy

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ppml/ppml/provision"
)

// TestDockerfile: the builder's Go is go.mod's, the binary is built without cgo, and the image
// is an empty base running as a user other than root.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from []string
	var user, build string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "FROM":
			from = append(from, f[1])
		case len(f) >= 2 && f[0] == "USER":
			user = f[1]
		case len(f) >= 2 && f[0] == "RUN" && strings.Contains(line, "go build"):
			build = line
		}
	}
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if len(from) != 2 || len(goVersion) < 2 || !strings.HasPrefix(from[0], "golang:"+string(goVersion[1])+"-") {
		t.Errorf("the build stage is %q; want golang:%s-..., the Go of go.mod", from, goVersion)
	}
	if final := from[len(from)-1]; final != "scratch" && !strings.HasPrefix(final, "gcr.io/distroless/static") {
		t.Errorf("the image's base is %s, not empty (scratch or distroless static)", final)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("USER %q: want a numeric user other than root", user)
	}
	if !strings.Contains(build, "CGO_ENABLED=0 go build") || !strings.HasSuffix(strings.TrimSpace(build), "./cmd/ppml") {
		t.Errorf("the build is %q: want CGO_ENABLED=0 go build ... ./cmd/ppml", build)
	}
	if !strings.Contains(string(b), `RUN ["/usr/local/bin/ppml", "version"]`) {
		t.Error("the image does not run the binary on the empty base, which checks that it is static")
	}
}

// TestStatic builds ppml as the Dockerfile does and checks that it is static: no program
// interpreter, no shared library.
func TestStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ppml")
	}
	bin := filepath.Join(t.TempDir(), "ppml")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/ppml")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("ppml has a %v program header: it is not static", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); len(libs) > 0 || err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		t.Errorf("ppml needs the shared libraries %q (%v)", libs, err)
	}
}

type meta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type object struct {
	Kind     string `yaml:"kind"`
	Metadata meta   `yaml:"metadata"`
	node     yaml.Node
}

type secret struct {
	Type       string            `yaml:"type"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

type configMap struct {
	Data map[string]string `yaml:"data"`
}

type service struct {
	Spec struct {
		Type     string            `yaml:"type"`
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type deployment struct {
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot bool   `yaml:"runAsNonRoot"`
		RunAsUser    *int64 `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName  string `yaml:"secretName"`
			DefaultMode *int   `yaml:"defaultMode"`
			Items       []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		EmptyDir *struct {
			Medium string `yaml:"medium"`
		} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	StartupProbe    *probe `yaml:"startupProbe"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		RunAsUser                *int64
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// readObjects parses the YAML documents of a manifest file.
func readObjects(t *testing.T, name string) []object {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var objs []object
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o object
		if err := dec.Decode(&o.node); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := o.node.Decode(&o); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("%s: an object without kind or name", name)
		}
		objs = append(objs, o)
	}
}

// find decodes the object of kind and name among objs into v.
func find(t *testing.T, objs []object, kind, name string, v any) {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			if err := o.node.Decode(v); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %s %q", kind, name)
}

// TestKubernetes holds the manifests to what ppml serve reads and serves: its configuration
// loads, the Secrets it reads exist with the keys it reads, the probes ask the paths and port it
// answers on, and it runs as a user other than root on a read-only root filesystem.
func TestKubernetes(t *testing.T) {
	objs := readObjects(t, "kubernetes/ppml-serve.yaml")
	secrets := map[string]secret{}
	for _, o := range readObjects(t, "kubernetes/secrets.example.yaml") {
		if o.Kind != "Secret" {
			t.Fatalf("secrets.example.yaml holds a %s", o.Kind)
		}
		var s secret
		o.node.Decode(&s)
		secrets[o.Metadata.Name] = s
	}
	// hasKey reports whether the Secret name exists with key.
	hasKey := func(name, key string) bool {
		s, ok := secrets[name]
		_, inData := s.Data[key]
		_, inString := s.StringData[key]
		return ok && (inData || inString)
	}

	var d deployment
	find(t, objs, "Deployment", "ppml-serve", &d)
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas < 2 {
		t.Errorf("%d replicas", d.Spec.Replicas)
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector's label %s=%s is not the pods'", k, v)
		}
	}
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 {
		t.Error("the pod may run as root: want runAsNonRoot and a runAsUser other than 0")
	}
	if pod.TerminationGracePeriodSeconds <= 30 {
		t.Errorf("terminationGracePeriodSeconds %d: ppml serve waits up to 30 s for the connections in progress", pod.TerminationGracePeriodSeconds)
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		sc := c.SecurityContext
		if !sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("container %s: want readOnlyRootFilesystem, no privilege escalation, every capability dropped, not root", c.Name)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]

	// fileAt says what lies at the path p in container c: the volume and, for a Secret or a
	// ConfigMap, the key, and whether it is mounted read-only.
	fileAt := func(c container, p string) (volume, key string, readOnly bool) {
		for _, m := range c.VolumeMounts {
			rel, ok := strings.CutPrefix(p, m.MountPath+"/")
			if !ok {
				continue
			}
			for _, v := range pod.Volumes {
				if v.Name != m.Name {
					continue
				}
				key = rel
				if v.Secret != nil {
					for _, it := range v.Secret.Items {
						if it.Path == rel {
							key = it.Key
						}
					}
				}
				return v.Name, key, m.ReadOnly
			}
		}
		return "", "", false
	}
	volume := func(name string) (secretName, configMapName string, memory bool) {
		for _, v := range pod.Volumes {
			switch {
			case v.Name != name:
			case v.Secret != nil:
				return v.Secret.SecretName, "", false
			case v.ConfigMap != nil:
				return "", v.ConfigMap.Name, false
			case v.EmptyDir != nil:
				return "", "", v.EmptyDir.Medium == "Memory"
			}
		}
		return "", "", false
	}
	env := map[string]string{} // the variable's value, or the Secret/key it comes from
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if !hasKey(ref.Name, ref.Key) {
				t.Errorf("$%s comes from the Secret %s's key %s, which secrets.example.yaml lacks", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = "secret:" + ref.Name + "/" + ref.Key
		default:
			env[e.Name] = e.Value
		}
	}

	// The configuration: the ConfigMap's server.toml, at the path of --config.
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 == len(c.Args) || c.Args[0] != "serve" {
		t.Fatalf("args %q: want serve --config FILE", c.Args)
	}
	vol, key, _ := fileAt(c, c.Args[i+1])
	var cm configMap
	_, cmName, _ := volume(vol)
	find(t, objs, "ConfigMap", cmName, &cm)
	config := filepath.Join(t.TempDir(), "server.toml")
	os.WriteFile(config, []byte(cm.Data[key]), 0o600)
	storeVar := regexp.MustCompile(`(?m)^store = "env:(\w+)"`).FindStringSubmatch(cm.Data[key])
	if storeVar == nil || !strings.HasPrefix(env[storeVar[1]], "secret:") {
		t.Fatalf("the store's URL does not come from a Secret through store = \"env:NAME\" (env %v)", env)
	}
	t.Setenv(storeVar[1], "postgres://from-the-secret")
	cfg, err := provision.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != "postgres://from-the-secret" {
		t.Errorf("store is %q", cfg.Store)
	}

	// The TLS certificate and key: files of a Secret.
	for _, p := range []string{cfg.TLSCert, cfg.TLSKey} {
		vol, key, ro := fileAt(c, p)
		name, _, _ := volume(vol)
		if !hasKey(name, key) || !ro {
			t.Errorf("%s is not the key of a Secret, mounted read-only, in secrets.example.yaml (volume %q, key %q)", p, vol, key)
		}
	}
	// The master key: the init container's copy, mode 0600, in memory, of a Secret's file.
	masterVol, _, ro := fileAt(c, cfg.MasterKeyFile)
	if _, _, memory := volume(masterVol); !memory || !ro {
		t.Errorf("master_key_file %s is not in a read-only mount of a volume in memory", cfg.MasterKeyFile)
	}
	copied := false
	for _, init := range pod.InitContainers {
		cmd := init.Command
		if len(cmd) != 5 || cmd[0] != "install" || cmd[1] != "-m" || cmd[2] != "0600" || cmd[4] != cfg.MasterKeyFile {
			continue
		}
		vol, key, _ := fileAt(init, cmd[3])
		name, _, _ := volume(vol)
		copied = hasKey(name, key)
		if dst, _, ro := fileAt(init, cmd[4]); dst != masterVol || ro {
			copied = false
		}
	}
	if !copied {
		t.Errorf("no init container copies the master key from a Secret to %s, mode 0600", cfg.MasterKeyFile)
	}
	// Collateral fetched from Intel is cached under $XDG_CACHE_HOME: a writable volume.
	if strings.Contains(cfg.Collateral, "://") {
		if vol, _, ro := fileAt(c, path.Join(env["XDG_CACHE_HOME"], "ppml")); vol == "" || ro {
			t.Errorf("the collateral cache ($XDG_CACHE_HOME=%q) is not on a writable volume", env["XDG_CACHE_HOME"])
		}
	}

	// Ports and probes.
	port := func(name string) int {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
		return 0
	}
	portOf := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n := 0
		for _, r := range p {
			n = n*10 + int(r-'0')
		}
		return n
	}
	if port("provision") != portOf(cfg.Listen) || port("metrics") != portOf(cfg.MetricsListen) || port("metrics") == 0 {
		t.Errorf("container ports %+v; listen %s, metrics_listen %s", c.Ports, cfg.Listen, cfg.MetricsListen)
	}
	for _, p := range []struct {
		name  string
		probe *probe
		path  string
	}{{"liveness", c.LivenessProbe, provision.HealthzPath}, {"readiness", c.ReadinessProbe, provision.ReadyzPath}, {"startup", c.StartupProbe, provision.HealthzPath}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || port(p.probe.HTTPGet.Port) != portOf(cfg.MetricsListen) {
			t.Errorf("the %s probe does not ask %s on the metrics port", p.name, p.path)
		}
	}

	var svc service
	find(t, objs, "Service", "ppml", &svc)
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the Service selects %s=%s, which the pods lack", k, v)
		}
	}
	if len(svc.Spec.Ports) != 1 || port(svc.Spec.Ports[0].TargetPort) != portOf(cfg.Listen) || svc.Spec.Ports[0].Protocol != "TCP" {
		t.Errorf("the Service's ports %+v do not lead to listen %s over TCP", svc.Spec.Ports, cfg.Listen)
	}
}
