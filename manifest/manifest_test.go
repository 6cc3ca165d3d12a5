package manifest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// minimal is the least a manifest holds; tests add to it.
const minimal = "libos.entrypoint = \"/bin/app\"\n"

func mustParse(t *testing.T, src string) *Manifest {
	t.Helper()
	m, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	return m
}

// writeFiles creates the files, by slash-separated path under dir, with their content.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParseTutorial(t *testing.T) {
	m, err := ParseFile("testdata/ppml-tutorial.manifest")
	if err != nil {
		t.Fatal(err)
	}
	if m.Entrypoint != "/home/user/examples/pytorch/my_venv/bin/python3" || !m.UseCmdlineArgv || m.Argv != nil {
		t.Errorf("entrypoint %q, cmdline argv %v, argv %q", m.Entrypoint, m.UseCmdlineArgv, m.Argv)
	}
	if m.LogLevel != "error" || m.StartDir != "/" || m.Debug || m.RemoteAttestation != "dcap" || m.ISVProdID != 7 || m.ISVSVN != 3 {
		t.Errorf("log level %q, start dir %q, debug %v, attestation %q, isv %d/%d", m.LogLevel, m.StartDir, m.Debug, m.RemoteAttestation, m.ISVProdID, m.ISVSVN)
	}
	wantEnv := map[string]EnvVar{
		"LD_LIBRARY_PATH":                {Value: "/lib:/usr/lib:/lib/x86_64-linux-gnu:/usr//lib/x86_64-linux-gnu"},
		"HOME":                           {Value: "/home/user"},
		"OMP_NUM_THREADS":                {Value: "8"},
		"LD_PRELOAD":                     {Value: "libsecret_prov_attest.so"},
		"SECRET_PROVISION_CONSTRUCTOR":   {Value: "1"},
		"SECRET_PROVISION_SET_KEY":       {Value: "default"},
		"SECRET_PROVISION_CA_CHAIN_PATH": {Value: "ssl/ca.crt"},
		"SECRET_PROVISION_SERVERS":       {Value: "localhost:4433"},
		"TERM":                           {Passthrough: true},
		"LANG":                           {Value: "C.UTF-8"},
	}
	if !reflect.DeepEqual(m.Env, wantEnv) {
		t.Errorf("env %v, want %v", m.Env, wantEnv)
	}
	if len(m.Mounts) != 9 {
		t.Fatalf("%d mounts, want 9", len(m.Mounts))
	}
	for i, want := range map[int]Mount{
		1: {Type: Chroot, Path: "/lib", URI: "file:/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc"},
		3: {Type: Tmpfs, Path: "/tmp"},
		5: {Type: Encrypted, Path: "/classes.txt", URI: "file:classes.txt", KeyName: "default"},
		8: {Type: Encrypted, Path: "/result.txt", URI: "file:result.txt", KeyName: "default"},
	} {
		if m.Mounts[i] != want {
			t.Errorf("mount %d: %+v, want %+v", i, m.Mounts[i], want)
		}
	}
	if got := m.Mounts[5].HostPath(); got != "classes.txt" {
		t.Errorf("host path %q", got)
	}
	wantTrusted := []TrustedFile{
		{URI: "file:pytorchexample.py", SHA256: "8c5f4d1c3e0b1f9f7f2a4e6d7c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291"},
		{URI: "file:ssl/ca.crt"},
		{URI: "file:/usr/lib/"},
	}
	if !reflect.DeepEqual(m.TrustedFiles, wantTrusted) || len(m.AllowedFiles) != 0 {
		t.Errorf("trusted files %+v, allowed files %q", m.TrustedFiles, m.AllowedFiles)
	}
	wantProv := Provisioning{Servers: []string{"localhost:4433"}, CAChainPath: "ssl/ca.crt", SetKey: "default"}
	if !reflect.DeepEqual(m.Provisioning, wantProv) {
		t.Errorf("provisioning %+v, want %+v", m.Provisioning, wantProv)
	}
	if err := m.CheckHashed(); err == nil || !strings.Contains(err.Error(), "file:ssl/ca.crt has no hash") {
		t.Errorf("CheckHashed: %v", err)
	}
}

func TestParseDefaults(t *testing.T) {
	m := mustParse(t, minimal)
	if m.LogLevel != "error" || m.StartDir != "/" || m.RemoteAttestation != "none" || m.Env == nil || m.Argv != nil || m.UID != 65534 || m.GID != 65534 || m.FileCheckPolicy != Strict || m.Network != NetworkNone || m.Job != "" {
		t.Errorf("defaults: %+v", m)
	}
	if want := []string{"localhost:4433"}; !reflect.DeepEqual(m.Provisioning.Servers, want) || m.Provisioning.CAChainPath != "" || m.Provisioning.SetKey != "" {
		t.Errorf("provisioning %+v", m.Provisioning)
	}
	// Gramine's root: the folder it runs in.
	if want := (Mount{Type: Chroot, Path: "/", URI: "file:."}); m.Root != want || m.UseHostEnv {
		t.Errorf("root %+v, want %+v; host environment %v", m.Root, want, m.UseHostEnv)
	}
	for src, want := range map[string]Mount{
		`fs.root = { uri = "file:/srv/app" }`:                {Type: Chroot, Path: "/", URI: "file:/srv/app"},
		`fs.root = { type = "chroot", uri = "file:app" }`:    {Type: Chroot, Path: "/", URI: "file:app"},
		`fs.root.type = "tmpfs"`:                             {Type: Tmpfs, Path: "/"},
		`fs.root = { type = "tmpfs", uri = "file:ignored" }`: {Type: Tmpfs, Path: "/", URI: "file:ignored"},
	} {
		if m := mustParse(t, minimal+src); m.Root != want {
			t.Errorf("%s: root %+v, want %+v", src, m.Root, want)
		}
	}
	if m := mustParse(t, minimal+"loader.insecure__use_host_env = true"); !m.UseHostEnv {
		t.Error("loader.insecure__use_host_env = true not read")
	}
	m = mustParse(t, minimal+`loader.argv = ["app", "--x"]
loader.insecure__use_cmdline_argv = false
fs.start_dir = "/work"
sgx.debug = true
loader.uid = 0
loader.gid = 1000
sgx.file_check_policy = "allow_all_but_log"
`)
	if !reflect.DeepEqual(m.Argv, []string{"app", "--x"}) || m.StartDir != "/work" || !m.Debug || m.UID != 0 || m.GID != 1000 || m.FileCheckPolicy != AllowAllButLog {
		t.Errorf("argv %q, start dir %q, debug %v, uid %d, gid %d, file-check policy %q", m.Argv, m.StartDir, m.Debug, m.UID, m.GID, m.FileCheckPolicy)
	}
}

func TestNetwork(t *testing.T) {
	for _, src := range []string{`ppml.network = "host"`, "[ppml]\nnetwork = \"mesh\"\njob = \"digits-1.a_b\""} {
		m := mustParse(t, minimal+src)
		want := NetworkHost
		if m.Job != "" {
			want = NetworkMesh
		}
		if m.Network != want {
			t.Errorf("%s: network %q, job %q", src, m.Network, m.Job)
		}
	}
}

func TestProvisioningServers(t *testing.T) {
	m := mustParse(t, minimal+`loader.env.SECRET_PROVISION_SERVERS = "a.example:4433; b:1,c:65535 [::1]:80"`)
	if want := []string{"a.example:4433", "b:1", "c:65535", "[::1]:80"}; !reflect.DeepEqual(m.Provisioning.Servers, want) {
		t.Errorf("servers %q, want %q", m.Provisioning.Servers, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"syntax", minimal + "x = ", "toml: line 2"},
		{"unknown key", minimal + "sgx.thread_count = 4", "unknown manifest key sgx.thread_count"},
		{"unknown table", minimal + "[extra]\na = 1\nb.c = 2", "unknown manifest key extra (it is not in Gramine's manifest schema)"},
		{"unknown ppml key", minimal + "ppml.gpu = 1", "unknown manifest key ppml.gpu: it is not one of ppml's keys (ppml.gpus, ppml.network, ppml.job)"},
		{"unknown mount key", minimal + `fs.mounts = [{ path = "/a", uri = "file:a", enable_recovery = true }]`, "unknown manifest key fs.mounts.enable_recovery"},
		{"two unknown keys", minimal + "a = 1\nb = 2", "unknown manifest key a (it is not in Gramine's manifest schema); unknown manifest key b"},
		{"old key", minimal + "sgx.thread_num = 4", "manifest key sgx.thread_num: Gramine renamed it sgx.max_threads"},
		{"old mount syntax", minimal + "fs.mount.lib.type = \"chroot\"\nfs.mount.lib.path = \"/lib\"", "manifest key fs.mount: Gramine replaced"},
		{"insecure keys", minimal + "fs.insecure__keys.default = \"00112233445566778899aabbccddeeff\"", "manifest key fs.insecure__keys: ppml receives keys only from a provisioning server"},
		{"fs.root path", minimal + "fs.root = { uri = \"file:.\", path = \"/\" }", "unknown manifest key fs.root.path"},
		{"fs.root uri", minimal + "fs.root.type = \"chroot\"", `fs.root: URI "" is not file:PATH`},
		{"fs.root encrypted", minimal + "fs.root = { type = \"encrypted\", uri = \"file:enc\" }", "fs.root: ppml does not take an encrypted root"},
		{"mount at the root", minimal + `fs.mounts = [{ path = "/a", uri = "file:a" }, { path = "//", uri = "file:b" }]`, `fs.mounts[1]: path "/" is the root, which fs.root mounts`},
		{"host env type", minimal + "loader.insecure__use_host_env = 1", `(last key "loader.insecure__use_host_env"): incompatible types`},
		{"wrong type", minimal + "sgx.debug = \"yes\"", `(last key "sgx.debug"): incompatible types`},
		{"ignored key type", minimal + "sgx.max_threads = \"4\"", `(last key "sgx.max_threads"): incompatible types`},
		{"isvsvn range", minimal + "sgx.isvsvn = 65536", "65536 is out of range for uint16"},
		{"no entrypoint", "loader.log_level = \"error\"", "libos.entrypoint is missing"},
		{"entrypoint uri", `libos.entrypoint = "file:/bin/app"`, "without file:"},
		{"argv and cmdline", minimal + "loader.argv = [\"a\"]\nloader.insecure__use_cmdline_argv = true", "loader.argv and loader.insecure__use_cmdline_argv exclude each other"},
		{"log level", minimal + `loader.log_level = "verbose"`, `loader.log_level "verbose" is not`},
		{"uid type", minimal + `loader.uid = "0"`, `(last key "loader.uid"): incompatible types`},
		{"uid negative", minimal + "loader.uid = -1", "-1 is out of range for uint32"},
		{"uid minus one", minimal + "loader.uid = 4294967295", "loader.uid 4294967295 is not a user ID"},
		{"gid minus one", minimal + "loader.gid = 0xffffffff", "loader.gid 4294967295 is not a group ID"},
		{"gid range", minimal + "loader.gid = 4294967296", "out of range for uint32"},
		{"start dir", minimal + `fs.start_dir = "work"`, `fs.start_dir "work" is not an absolute path`},
		{"epid", minimal + `sgx.remote_attestation = "epid"`, "EPID attestation is retired"},
		{"attestation", minimal + `sgx.remote_attestation = "tdx"`, `sgx.remote_attestation "tdx" is not none or dcap`},
		{"file-check policy", minimal + `sgx.file_check_policy = "allow_all"`, `sgx.file_check_policy "allow_all" is not strict or allow_all_but_log`},
		{"env passthrough false", minimal + "loader.env.A = { passthrough = false }", `(last key "loader.env.A"): an environment variable is "VALUE", { value = "VALUE" } or { passthrough = true }`},
		{"env value type", minimal + "loader.env.A = { value = 1 }", "an environment variable is"},
		{"env both", minimal + "loader.env.A = { value = \"1\", passthrough = true }", "an environment variable is"},
		{"env integer", minimal + "loader.env.A = 1", "an environment variable is"},
		{"mount relative", minimal + `fs.mounts = [{ path = "lib", uri = "file:/lib" }]`, `fs.mounts[0]: path "lib" is not an absolute path`},
		{"mount type", minimal + `fs.mounts = [{ type = "overlay", path = "/a", uri = "file:a" }]`, `fs.mounts[0]: type "overlay" is not chroot, encrypted or tmpfs`},
		{"mount shm", minimal + `fs.mounts = [{ type = "untrusted_shm", path = "/dev/shm", uri = "file:/dev/shm" }]`, "ppml does not support untrusted_shm mounts"},
		{"mount uri", minimal + `fs.mounts = [{ path = "/a" }, { path = "/b", uri = "b" }]`, `fs.mounts[0]: URI "" is not file:PATH`},
		{"mount uri scheme", minimal + `fs.mounts = [{ path = "/b", uri = "dev:tty" }]`, `fs.mounts[0]: URI "dev:tty" is not file:PATH`},
		{"key name on chroot", minimal + `fs.mounts = [{ path = "/a", uri = "file:a", key_name = "k" }]`, "key_name is only for encrypted mounts, and /a is chroot"},
		{"trusted uri", minimal + `sgx.trusted_files = ["/bin/app"]`, `URI "/bin/app" is not file:PATH`},
		{"trusted sha256", minimal + `sgx.trusted_files = [{ uri = "file:a", sha256 = "ABCD" }]`, `trusted file file:a: sha256 "ABCD" is not 64 lowercase hex digits`},
		{"trusted sha256 uppercase", minimal + `sgx.trusted_files = [{ uri = "file:a", sha256 = "` + strings.Repeat("aB", 32) + `" }]`, `trusted file file:a: sha256 "` + strings.Repeat("aB", 32) + `" is not 64 lowercase hex digits`},
		{"trusted sha256 not hex", minimal + `sgx.trusted_files = [{ uri = "file:a", sha256 = "` + strings.Repeat("g", 64) + `" }]`, `is not 64 lowercase hex digits`},
		{"trusted table key", minimal + `sgx.trusted_files = [{ uri = "file:a", size = "1" }]`, `a trusted file has no key "size"`},
		{"trusted type", minimal + `sgx.trusted_files = [1]`, `a trusted file is "file:PATH" or`},
		{"old trusted syntax", minimal + `sgx.trusted_files.python = "file:/usr/bin/python3"`, `(last key "sgx.trusted_files")`},
		{"allowed uri", minimal + `sgx.allowed_files = ["result.txt"]`, `sgx.allowed_files: URI "result.txt" is not file:PATH`},
		{"server", minimal + `loader.env.SECRET_PROVISION_SERVERS = "localhost"`, `SECRET_PROVISION_SERVERS: "localhost" is not host:port`},
		{"server port", minimal + `loader.env.SECRET_PROVISION_SERVERS = "a:1,b:http"`, `"b:http" is not host:port`},
		{"no server", minimal + `loader.env.SECRET_PROVISION_SERVERS = " ;, "`, "SECRET_PROVISION_SERVERS names no server"},
		{"server passthrough", minimal + "loader.env.SECRET_PROVISION_SERVERS = { passthrough = true }", "loader.env.SECRET_PROVISION_SERVERS must have its value in the manifest"},
		{"ca passthrough", minimal + "loader.env.SECRET_PROVISION_CA_CHAIN_PATH = { passthrough = true }", "SECRET_PROVISION_CA_CHAIN_PATH must have its value"},
		{"set key unused", minimal + `loader.env.SECRET_PROVISION_SET_KEY = "model"` + "\n" + `fs.mounts = [{ type = "encrypted", path = "/m", uri = "file:m" }]`, `SECRET_PROVISION_SET_KEY names key "model", which no encrypted mount uses`},
		{"network", minimal + `ppml.network = "bridge"`, `ppml.network "bridge" is not none, host or mesh`},
		{"network type", minimal + `ppml.network = true`, `(last key "ppml.network"): incompatible types`},
		{"mesh without job", minimal + `ppml.network = "mesh"`, `ppml.network "mesh" needs ppml.job`},
		{"mesh job name", minimal + "ppml.network = \"mesh\"\nppml.job = \"a b\"", `not "a b"`},
		{"job without mesh", minimal + `ppml.job = "a"`, `ppml.job is only for ppml.network = "mesh"`},
		{"unknown ppml key", minimal + `ppml.gpu = true`, "unknown manifest key ppml.gpu"},
		{"date", minimal + "sys.ioctl_structs.s = 1979-05-27", "manifest key sys.ioctl_structs.s: a time.Time is not allowed in a manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseFileNamesFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "bad.manifest")
	writeFiles(t, filepath.Dir(name), map[string]string{"bad.manifest": "sgx.debug = true\n"})
	if _, err := ParseFile(name); err == nil || !strings.HasPrefix(err.Error(), name+": libos.entrypoint is missing") {
		t.Errorf("ParseFile: %v", err)
	}
	if _, err := ParseFile(name + ".missing"); err == nil {
		t.Error("ParseFile of a missing file succeeded")
	}
}

func TestFreeFormAndIgnoredKeys(t *testing.T) {
	mustParse(t, minimal+`loader.entrypoint = { uri = "file:/lib/libsysdb.so", sha256 = "00" }
loader.log_file = "/tmp/log"
libos.check_invalid_pointers = false
sgx.cpu_features.avx512 = "disabled"
sgx.profile.enable = "main"
sgx.seal_key.flags_mask = "0xffffffffffffffff"
sys.stack.size = "1M"
sys.brk.max_size = "64M"
sys.fds.limit = 900
sys.allowed_ioctls = [{ request_code = 0x8912, struct = "ifconf" }]
sys.ioctl_structs.ifconf = [{ size = 8, direction = "out", name = "ifc_len" }, { ptr = [{ size = 1 }] }]
sys.debug__mock_syscalls = [{ name = "sched_yield", return = 0 }]
`)
	mustParse(t, minimal+`loader.entrypoint = "file:/lib/libsysdb.so"`) // Gramine's old form
}
