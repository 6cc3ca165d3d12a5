package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// RenderOptions set what Render's globals and trusted files refer to. The zero value suits a
// template rendered on the machine where the workload will run.
type RenderOptions struct {
	// Dir is the folder that relative trusted-file paths are relative to: "" for the current one.
	Dir string
	// Python is the interpreter whose sysconfig gives python.stdlib and the like:
	// /usr/bin/python3 by default, as for gramine-manifest installed from a distribution.
	Python string
	// RuntimeDir is what gramine.runtimedir() gives: by default the folder of the host's C
	// library, since ppml runs workloads on it where Gramine brings its own.
	RuntimeDir string
	// LibOS is what gramine.libos gives: by default the running executable, ppml itself.
	LibOS string
	// Progress, when not nil, is called once the trusted files are listed, with the number of
	// bytes to hash; the hashing, on every core, counts the bytes it reads on the writer that
	// it returns, which must be safe for concurrent use.
	Progress func(total int64) io.Writer
}

// Render fills the manifest template with the defines (gramine-manifest's -D NAME=VALUE), parses
// the result, hashes its trusted files (see HashTrustedFiles) and returns the manifest in
// canonical form. opts may be nil. Errors in the template give its line.
func Render(template []byte, defines map[string]string, opts *RenderOptions) ([]byte, error) {
	if opts == nil {
		opts = &RenderOptions{}
	}
	text, err := expand(string(template), defines, opts)
	if err != nil {
		return nil, err
	}
	m, err := Parse([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("the rendered template: %w", err)
	}
	if m, err = m.hashTrustedFiles(opts.Dir, opts.Progress); err != nil {
		return nil, err
	}
	return m.Canonical(), nil
}

// expand renders the template's text.
func expand(template string, defines map[string]string, opts *RenderOptions) (string, error) {
	nodes, err := parseTemplate(template)
	if err != nil {
		return "", err
	}
	r := &renderer{opts: opts, vars: map[string]any{}}
	for k, v := range defines {
		if !isName(k) {
			return "", fmt.Errorf("define %q: a name is letters, digits and _, not starting with a digit", k)
		}
		r.vars[k] = v
	}
	r.globals = map[string]any{
		"gramine": namespace{"gramine", r.gramine},
		"python":  namespace{"python", r.python},
		"env":     namespace{"env", envAttr},
	}
	var b strings.Builder
	err = r.render(&b, nodes)
	return b.String(), err
}

// Template values are string, int64, bool, nil (None), pathValue, []any (a list), namespace and
// function.
type (
	// pathValue is a Python pathlib.Path.
	pathValue string
	// namespace is a global such as gramine, whose attributes get gives.
	namespace struct {
		name string
		get  func(attr string) (any, error)
	}
	function func(args []any, kwargs map[string]any) (any, error)
)

type renderer struct {
	opts    *RenderOptions
	vars    map[string]any // the defines and loop variables, over the globals
	globals map[string]any
	py      *pythonInfo
}

// render writes the text of the nodes to b.
func (r *renderer) render(b *strings.Builder, nodes []node) error {
	for _, n := range nodes {
		if err := n.render(r, b); err != nil {
			return err
		}
	}
	return nil
}

func (n textNode) render(_ *renderer, b *strings.Builder) error {
	b.WriteString(string(n))
	return nil
}

func (n *outputNode) render(r *renderer, b *strings.Builder) error {
	v, err := n.e.eval(r)
	if err == nil {
		var s string
		if s, err = str(v); err == nil {
			b.WriteString(s)
		}
	}
	if err != nil {
		return fmt.Errorf("line %d: %w", n.line, err)
	}
	return nil
}

func (n *forNode) render(r *renderer, b *strings.Builder) error {
	v, err := n.seq.eval(r)
	list, ok := v.([]any)
	if err == nil && !ok {
		err = fmt.Errorf("cannot loop over %s", typeName(v))
	}
	if err != nil {
		return fmt.Errorf("line %d: %w", n.line, err)
	}
	outer, shadowed := r.vars[n.name]
	for _, x := range list {
		r.vars[n.name] = x
		if err := r.render(b, n.body); err != nil {
			return err
		}
	}
	delete(r.vars, n.name)
	if shadowed {
		r.vars[n.name] = outer
	}
	return nil
}

func (n *ifNode) render(r *renderer, b *strings.Builder) error {
	v, err := n.cond.eval(r)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.line, err)
	}
	body := n.els
	if truth(v) {
		body = n.then
	}
	return r.render(b, body)
}

func (e literal) eval(*renderer) (any, error) { return e.v, nil }

func (e name) eval(r *renderer) (any, error) {
	if v, ok := r.vars[string(e)]; ok {
		return v, nil
	}
	if v, ok := r.globals[string(e)]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("'%s' is undefined (define it: -D %s=VALUE)", e, e)
}

func (e attr) eval(r *renderer) (any, error) {
	x, err := e.x.eval(r)
	if err != nil {
		return nil, err
	}
	return getAttr(x, e.name)
}

func (e call) eval(r *renderer) (any, error) {
	fn, err := e.fn.eval(r)
	if err != nil {
		return nil, err
	}
	f, ok := fn.(function)
	if !ok {
		return nil, fmt.Errorf("%s is not a function", typeName(fn))
	}
	args := make([]any, len(e.args))
	for i, a := range e.args {
		if args[i], err = a.eval(r); err != nil {
			return nil, err
		}
	}
	kwargs := map[string]any{}
	for k, a := range e.kwargs {
		if kwargs[k], err = a.eval(r); err != nil {
			return nil, err
		}
	}
	return f(args, kwargs)
}

func (e negation) eval(r *renderer) (any, error) {
	x, err := e.x.eval(r)
	return !truth(x), err
}

func (e operation) eval(r *renderer) (any, error) {
	x, err := e.x.eval(r)
	if err != nil {
		return nil, err
	}
	switch e.op {
	case "and", "or": // Python's: the operand that decides
		if truth(x) == (e.op == "or") {
			return x, nil
		}
		return e.y.eval(r)
	}
	y, err := e.y.eval(r)
	return equal(x, y) == (e.op == "=="), err
}

func (e conditional) eval(r *renderer) (any, error) {
	test, err := e.test.eval(r)
	if err != nil {
		return nil, err
	}
	if truth(test) {
		return e.then.eval(r)
	}
	return e.els.eval(r)
}

// str is Python's str() for the values a manifest can hold.
func str(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case pathValue:
		return string(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case bool:
		if v {
			return "True", nil
		}
		return "False", nil
	case nil:
		return "None", nil
	}
	return "", fmt.Errorf("cannot write %s into the manifest", typeName(v))
}

func truth(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v != ""
	case int64:
		return v != 0
	case nil:
		return false
	case []any:
		return len(v) > 0
	}
	return true
}

func equal(x, y any) bool {
	comparable := func(v any) bool {
		switch v.(type) {
		case nil, string, int64, bool, pathValue:
			return true
		}
		return false
	}
	return comparable(x) && comparable(y) && x == y
}

func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return "a string"
	case pathValue:
		return "a path"
	case int64:
		return "an integer"
	case bool:
		return "a boolean"
	case nil:
		return "None"
	case []any:
		return "a list"
	case namespace:
		return "'" + v.name + "'"
	case function:
		return "a function"
	}
	return fmt.Sprintf("a %T", v)
}

func getAttr(x any, attr string) (any, error) {
	switch x := x.(type) {
	case namespace:
		return x.get(attr)
	case pathValue:
		test := map[string]func(os.FileInfo) bool{
			"exists": func(os.FileInfo) bool { return true },
			"is_dir": os.FileInfo.IsDir,
			"is_file": func(i os.FileInfo) bool {
				return i.Mode().IsRegular()
			},
		}[attr]
		if test != nil {
			return function(func(args []any, kwargs map[string]any) (any, error) {
				if err := noArgs("path."+attr, args, kwargs); err != nil {
					return nil, err
				}
				info, err := os.Stat(string(x))
				return err == nil && test(info), nil
			}), nil
		}
	}
	return nil, fmt.Errorf("%s has no attribute '%s'", typeName(x), attr)
}

func noArgs(fn string, args []any, kwargs map[string]any) error {
	if len(args)+len(kwargs) > 0 {
		return fmt.Errorf("%s() takes no arguments", fn)
	}
	return nil
}

// gramine gives gramine.libos and gramine.runtimedir.
func (r *renderer) gramine(attr string) (any, error) {
	switch attr {
	case "libos":
		if r.opts.LibOS != "" {
			return pathValue(r.opts.LibOS), nil
		}
		exe, err := os.Executable()
		return pathValue(exe), err
	case "runtimedir":
		return function(func(args []any, kwargs map[string]any) (any, error) {
			if len(args)+len(kwargs) > 1 {
				return nil, errors.New("gramine.runtimedir() takes one argument, libc")
			}
			libc := any("glibc")
			for _, v := range args {
				libc = v
			}
			for k, v := range kwargs {
				if k != "libc" {
					return nil, fmt.Errorf("gramine.runtimedir() has no argument %s", k)
				}
				libc = v
			}
			if libc != "glibc" {
				return nil, fmt.Errorf("gramine.runtimedir(libc=%v): ppml runs workloads on the host's glibc", libc)
			}
			if r.opts.RuntimeDir != "" {
				return pathValue(r.opts.RuntimeDir), nil
			}
			dir, err := hostLibDir()
			return pathValue(dir), err
		}), nil
	}
	return nil, fmt.Errorf("gramine.%s is not supported (ppml gives gramine.libos and gramine.runtimedir())", attr)
}

// hostLibDir returns the folder that holds the host's C library, with symbolic links resolved.
func hostLibDir() (string, error) {
	triple := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	for _, dir := range []string{"/lib/" + triple, "/usr/lib/" + triple, "/lib64", "/usr/lib64", "/lib", "/usr/lib"} {
		if _, err := os.Stat(filepath.Join(dir, "libc.so.6")); err == nil {
			return filepath.EvalSymlinks(dir)
		}
	}
	return "", errors.New("gramine.runtimedir(): the host's C library, libc.so.6, is not in any usual folder")
}

// pythonInfo is what python.* needs from the interpreter's sysconfig.
type pythonInfo struct {
	Paths     map[string]string `json:"paths"`
	Distlib   string            `json:"distlib"`
	ExtSuffix string            `json:"ext_suffix"`
}

// pythonScript prints pythonInfo; distlib is computed as gramine-manifest does.
const pythonScript = `import json, sys, sysconfig
json.dump({"paths": sysconfig.get_paths(),
           "distlib": sysconfig.get_path("stdlib", vars={"py_version_short": sys.version_info[0]}) + "/dist-packages",
           "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX") or ""}, sys.stdout)`

// python gives python.stdlib, platstdlib, purelib, distlib, ext_suffix, get_path(NAME) and
// get_sys_path(INTERPRETER).
func (r *renderer) python(attr string) (any, error) {
	if attr == "get_sys_path" {
		return function(getSysPath), nil
	}
	if r.py == nil {
		interpreter := r.opts.Python
		if interpreter == "" {
			interpreter = "/usr/bin/python3"
		}
		var info pythonInfo
		if err := runPython(interpreter, pythonScript, &info); err != nil {
			return nil, fmt.Errorf("python.%s: %w", attr, err)
		}
		r.py = &info
	}
	switch attr {
	case "stdlib", "platstdlib", "purelib":
		return pathValue(r.py.Paths[attr]), nil
	case "distlib":
		return pathValue(r.py.Distlib), nil
	case "ext_suffix":
		return r.py.ExtSuffix, nil
	case "get_path":
		return function(func(args []any, kwargs map[string]any) (any, error) {
			var key any
			if len(args) == 1 && len(kwargs) == 0 {
				key = args[0]
			}
			s, ok := key.(string)
			if !ok || r.py.Paths[s] == "" {
				return nil, fmt.Errorf("python.get_path() takes one argument, a sysconfig path name such as 'stdlib'")
			}
			return r.py.Paths[s], nil
		}), nil
	}
	return nil, fmt.Errorf("python.%s is not supported (ppml gives python.stdlib, platstdlib, purelib, distlib, ext_suffix, get_path() and get_sys_path())", attr)
}

// getSysPath is python.get_sys_path(INTERPRETER): the interpreter's sys.path entries that exist.
func getSysPath(args []any, kwargs map[string]any) (any, error) {
	if len(args) != 1 || len(kwargs) > 0 {
		return nil, errors.New("python.get_sys_path() takes one argument, the interpreter")
	}
	interpreter, err := str(args[0])
	if err != nil {
		return nil, err
	}
	var paths []string
	if err := runPython(interpreter, "import json, sys; json.dump(sys.path, sys.stdout)", &paths); err != nil {
		return nil, fmt.Errorf("python.get_sys_path(): %w", err)
	}
	var list []any
	for _, p := range paths {
		if _, err := os.Stat(p); p != "" && err == nil {
			list = append(list, pathValue(p))
		}
	}
	return list, nil
}

// runPython runs the script with the interpreter and decodes what it prints as JSON into v.
func runPython(interpreter, script string, v any) error {
	var stderr bytes.Buffer
	cmd := exec.Command(interpreter, "-c", script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s: %w %s", interpreter, err, strings.TrimSpace(stderr.String()))
	}
	return json.Unmarshal(out, v)
}

// envAttr gives env.NAME, the environment variable, and env.get(NAME[, DEFAULT]).
func envAttr(attr string) (any, error) {
	if attr == "get" {
		return function(func(args []any, kwargs map[string]any) (any, error) {
			if len(args) < 1 || len(args) > 2 || len(kwargs) > 0 {
				return nil, errors.New("env.get() takes a name and a default")
			}
			name, err := str(args[0])
			if err != nil {
				return nil, err
			}
			if v, ok := os.LookupEnv(name); ok {
				return v, nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return nil, nil
		}), nil
	}
	if v, ok := os.LookupEnv(attr); ok {
		return v, nil
	}
	return nil, fmt.Errorf("environment variable %s is not set (env.%s)", attr, attr)
}
