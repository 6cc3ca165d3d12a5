package manifest

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakePython writes an executable that prints sys.path as a Python interpreter would.
func fakePython(t *testing.T, name string, sysPath ...string) {
	t.Helper()
	quoted := make([]string, len(sysPath))
	for i, p := range sysPath {
		quoted[i] = `"` + p + `"`
	}
	script := "#!/bin/sh\necho '[" + strings.Join(quoted, ", ") + "]'\n"
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestRenderPytorchLikeTemplate(t *testing.T) {
	template, err := os.ReadFile("testdata/pytorch-like.manifest.template")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"runtime/libc.so.6":              "libc",
		"venv/lib/python3/os.py":         "os",
		"venv/lib/python3/json/init.py":  "json",
		"venv/lib/python3.zip":           "zip",
		"script.py":                      "print('hello')",
		"elsewhere/not-in-sys-path.py":   "no",
		"venv/lib/python3/__pycache__/x": "pyc",
	})
	python := filepath.Join(dir, "venv/bin/python3")
	fakePython(t, python, "", dir+"/venv/lib/python3.zip", dir+"/venv/lib/python3", dir+"/venv/lib/missing")
	t.Setenv("HOME", "/home/owner")
	t.Setenv("EDMM", "")
	defines := map[string]string{"entrypoint": python, "log_level": "error", "arch_libdir": "/lib/x86_64-linux-gnu"}
	opts := &RenderOptions{Dir: dir, RuntimeDir: dir + "/runtime"}
	out, err := Render(template, defines, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, string(out))
	if string(m.Canonical()) != string(out) || Measure(m) != sha256.Sum256(out) {
		t.Error("Render's output is not in canonical form")
	}
	if m.Entrypoint != python || m.Env["HOME"].Value != "/home/owner" || m.Env["LD_LIBRARY_PATH"].Value != "/lib:/lib/x86_64-linux-gnu:/usr//lib/x86_64-linux-gnu" {
		t.Errorf("entrypoint %q, env %v", m.Entrypoint, m.Env)
	}
	wantMounts := []Mount{
		{Type: Chroot, Path: python, URI: "file:" + python},
		{Type: Chroot, Path: "/lib", URI: "file:" + dir + "/runtime"},
		{Type: Chroot, Path: dir + "/venv/lib/python3.zip", URI: "file:" + dir + "/venv/lib/python3.zip"},
		{Type: Chroot, Path: dir + "/venv/lib/python3", URI: "file:" + dir + "/venv/lib/python3"},
		{Type: Tmpfs, Path: "/tmp"},
		{Type: Encrypted, Path: "/model.pt", URI: "file:model.pt", KeyName: "default"},
	}
	if !reflect.DeepEqual(m.Mounts, wantMounts) {
		t.Errorf("mounts:\n%v\nwant\n%v", m.Mounts, wantMounts)
	}
	pythonScript, _ := os.ReadFile(python)
	wantTrusted := []TrustedFile{
		{"file:" + python, sum(string(pythonScript))},
		{"file:" + dir + "/runtime/libc.so.6", sum("libc")},
		{"file:" + dir + "/venv/lib/python3.zip", sum("zip")},
		{"file:" + dir + "/venv/lib/python3/__pycache__/x", sum("pyc")},
		{"file:" + dir + "/venv/lib/python3/json/init.py", sum("json")},
		{"file:" + dir + "/venv/lib/python3/os.py", sum("os")},
		{"file:script.py", sum("print('hello')")},
	}
	if !reflect.DeepEqual(m.TrustedFiles, wantTrusted) {
		t.Errorf("trusted files:\n%v\nwant\n%v", m.TrustedFiles, wantTrusted)
	}
	if !strings.Contains(string(out), "sgx.max_threads = 32\n") || !strings.Contains(string(out), "sgx.edmm_enable = false\n") {
		t.Errorf("without EDMM:\n%s", out)
	}

	t.Setenv("EDMM", "1")
	edmm, err := Render(template, defines, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(edmm), "sgx.max_threads = 1\n") || !strings.Contains(string(edmm), "sgx.edmm_enable = true\n") {
		t.Errorf("with EDMM=1:\n%s", edmm)
	}

	delete(defines, "arch_libdir")
	if _, err := Render(template, defines, opts); err == nil || err.Error() != "line 6: 'arch_libdir' is undefined (define it: -D arch_libdir=VALUE)" {
		t.Errorf("an undefined name: %v", err)
	}
}

func TestRenderChecksTheManifest(t *testing.T) {
	if _, err := Render([]byte("sgx.debug = {{ x }}\n"), map[string]string{"x": "true"}, nil); err == nil || err.Error() != "the rendered template: libos.entrypoint is missing: name the workload's first executable" {
		t.Errorf("Render of an incomplete manifest: %v", err)
	}
}

// TestPythonGlobals checks python.* against what /usr/bin/python3 itself says.
func TestPythonGlobals(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	oracle := `import os, sys, sysconfig
p = sysconfig.get_paths()
dist = sysconfig.get_path("stdlib", vars={"py_version_short": "3"}) + "/dist-packages"
print("|".join([p["stdlib"], p["platstdlib"], p["purelib"], dist, sysconfig.get_config_var("EXT_SUFFIX") or "", p["include"]]
               + [x for x in sys.path if x and os.path.exists(x)]), end="")`
	want, err := exec.Command("/usr/bin/python3", "-c", oracle).Output()
	if err != nil {
		t.Fatal(err)
	}
	got, err := expand(`{{ python.stdlib }}|{{ python.platstdlib }}|{{ python.purelib }}|{{ python.distlib }}|{{ python.ext_suffix }}|{{ python.get_path('include') }}`+
		`{% for p in python.get_sys_path('/usr/bin/python3') %}|{{ p }}{% endfor %}`, nil, &RenderOptions{})
	if err != nil || got != string(want) {
		t.Errorf("python globals: %q, %v\nwant %q", got, err, want)
	}
	if _, err := expand(`{{ python.nonesuch }}`, nil, &RenderOptions{Python: "/nonexistent/python3"}); err == nil || !strings.Contains(err.Error(), "line 1: python.nonesuch: /nonexistent/python3:") {
		t.Errorf("a missing interpreter: %v", err)
	}
}

func TestGramineGlobals(t *testing.T) {
	got, err := expand(`{{ gramine.runtimedir() }} {{ gramine.runtimedir(libc='glibc') }} {{ gramine.runtimedir('glibc') }}`, nil, &RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := strings.Fields(got)[0]
	if _, err := os.Stat(filepath.Join(dir, "libc.so.6")); err != nil || got != dir+" "+dir+" "+dir {
		t.Errorf("gramine.runtimedir(): %q (%v)", got, err)
	}
	exe, _ := os.Executable()
	if got, err := expand(`{{ gramine.libos }}`, nil, &RenderOptions{}); err != nil || got != exe {
		t.Errorf("gramine.libos: %q, %v; want %q", got, err, exe)
	}
	opts := &RenderOptions{LibOS: "/opt/libos", RuntimeDir: "/opt/runtime"}
	if got, err := expand(`{{ gramine.libos }} {{ gramine.runtimedir() }}`, nil, opts); err != nil || got != "/opt/libos /opt/runtime" {
		t.Errorf("with options: %q, %v", got, err)
	}
}

func TestExpand(t *testing.T) {
	t.Setenv("PPML_TEST_VAR", "set")
	defines := map[string]string{"name": "app", "empty": "", "one": "1"}
	for _, tc := range []struct{ template, want string }{
		{"plain text\n", "plain text\n"},
		{`a = "{{name}}" b = "/x/{{ name }}/y"`, `a = "app" b = "/x/app/y"`},
		{"{# a comment {{ undefined }} #}x", "x"},
		{`{{ env.PPML_TEST_VAR }} {{ env.get('PPML_TEST_VAR') }} {{ env.get("PPML_UNSET_VAR", 'dflt') }} {{ env.get('PPML_UNSET_VAR') }}`, "set set dflt None"},
		{`{{ 'y' if name == "app" else 'n' }}{{ 'y' if name != 'app' else 'n' }}`, "yn"},
		{`{{ 'y' if empty else 'n' }}{{ 'y' if not empty else 'n' }}{{ empty or 'dflt' }}{{ name and 'both' }}`, "nydfltboth"},
		{`{{ one == '1' }} {{ 1 }} {{ true }} {{ None }} {{ (name) }} {{ 'it\'s\\' }}`, `True 1 True None app it's\`},
		{"{% if name == 'app' %}yes{% else %}no{% endif %}|{% if empty %}yes{% endif %}", "yes|"},
		{"{% if name is defined %}y{% endif %}{% if nope is defined %}n{% endif %}{% if nope is not defined %}y{% endif %}{{ env is defined }}", "yyTrue"},
		{"{% for x in python.get_sys_path('/usr/bin/python3') %}{% if x is defined %}{% else %}n{% endif %}{% endfor %}.", "."},
	} {
		got, err := expand(tc.template, defines, &RenderOptions{})
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.template, got, err, tc.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	defines := map[string]string{"name": "app"}
	for _, tc := range []struct{ template, want string }{
		{"a\nb = {{ nope }}", "line 2: 'nope' is undefined (define it: -D nope=VALUE)"},
		{"{% for p in nope %}{% endfor %}", "line 1: 'nope' is undefined"},
		{"{{ name is odd }}", "line 1: only the tests 'is defined' and 'is not defined' are supported"},
		{"{{ name.x is defined }}", "line 1: 'is defined' tests a name"},
		{"{{ name is }}", "line 1: only the tests"},
		{"\n{% for p in name %}{% endfor %}", "line 2: cannot loop over a string"},
		{"{% for p in x %}", "line 1: {% for %} has no {% endfor %}"},
		{"{% if name %}{% endfor %}", "line 1: {% if %} has no {% endif %}"},
		{"\n\n{% endif %}", "line 3: {% endif %} without a block to end"},
		{"{% else x %}", "line 1: {% else %} takes nothing more"},
		{"{% set x = 1 %}", "line 1: {% set %} is not supported (only for, if and else are)"},
		{"{% for in x %}{% endfor %}", "line 1: write {% for NAME in EXPRESSION %}"},
		{"{%- if name %}{% endif %}", "line 1: whitespace control ({%- or -%}) is not supported"},
		{"x {{ name", "line 1: {{ without }}"},
		{"{{ name name }}", `line 1: unexpected "name" in an expression`},
		{"{{ name | upper }}", `line 1: unexpected "| upper " in an expression`},
		{"{{ 'open }}", "line 1: a string has no closing quote"},
		{"{{ name if name }}", `line 1: expected "else" in an expression`},
		{"{{ name( }}", "line 1: an expression ends too early"},
		{"{{ name() }}", "line 1: a string is not a function"},
		{"{{ name.upper }}", "line 1: a string has no attribute 'upper'"},
		{"{{ gramine }}", "line 1: cannot write 'gramine' into the manifest"},
		{"{{ gramine.pkglibdir }}", "line 1: gramine.pkglibdir is not supported"},
		{"{{ gramine.runtimedir(libc='musl') }}", "ppml runs workloads on the host's glibc"},
		{"{{ gramine.runtimedir(x=1) }}", "gramine.runtimedir() has no argument x"},
		{"{{ env.PPML_UNSET_VAR }}", "line 1: environment variable PPML_UNSET_VAR is not set (env.PPML_UNSET_VAR)"},
		{"{{ env.get() }}", "env.get() takes a name and a default"},
		{"{{ python.get_sys_path() }}", "python.get_sys_path() takes one argument"},
		{"{{ python.get_sys_path('/nonexistent/python') }}", "python.get_sys_path(): /nonexistent/python:"},
		{"{% for p in python.get_sys_path('/bin/true') %}{% endfor %}", "python.get_sys_path(): unexpected end of JSON input"},
	} {
		if _, err := expand(tc.template, defines, &RenderOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.template, err, tc.want)
		}
	}
	if _, err := expand("", map[string]string{"bad-name": "x"}, &RenderOptions{}); err == nil || !strings.Contains(err.Error(), `define "bad-name"`) {
		t.Errorf("a bad define: %v", err)
	}
}

func TestPathMethods(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"lib/f": ""})
	python := filepath.Join(dir, "python")
	fakePython(t, python, dir+"/lib", dir+"/lib/f")
	got, err := expand("{% for p in python.get_sys_path(py) %}{{ p.is_dir() }} {{ p.is_file() }} {{ p.exists() }};{% endfor %}", map[string]string{"py": python}, &RenderOptions{})
	if err != nil || got != "True False True;False True True;" {
		t.Errorf("path methods: %q, %v", got, err)
	}
	if _, err := expand("{% for p in python.get_sys_path(py) %}{{ p.is_dir(1) }}{% endfor %}", map[string]string{"py": python}, &RenderOptions{}); err == nil || !strings.Contains(err.Error(), "path.is_dir() takes no arguments") {
		t.Errorf("is_dir(1): %v", err)
	}
}
