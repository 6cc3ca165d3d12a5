package manifest

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, and that the canonical form of what it accepts
// parses to itself.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{minimal, spelledOut, tabled, signedManifest, "sys.ioctl_structs.a = [1.5, { b = 'c' }]\n" + minimal} {
		f.Add([]byte(seed))
	}
	if b, err := os.ReadFile("testdata/ppml-tutorial.manifest"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Parse(m.Canonical())
		if err != nil {
			t.Fatalf("the canonical form does not parse: %v\n%s", err, m.Canonical())
		}
		if string(again.Canonical()) != string(m.Canonical()) {
			t.Fatalf("the canonical form changes when parsed:\n%s\n%s", m.Canonical(), again.Canonical())
		}
	})
}

// FuzzTemplate checks that parsing and rendering a template never panics, and that every error
// gives the template's line. Its renderer has defines, env and gramine (with the options set,
// so that nothing is read from the host) but not python, which would run programs; its one list
// holds a single path, so that nested loops cannot multiply the output.
func FuzzTemplate(f *testing.F) {
	for _, seed := range []string{
		"plain text\n",
		`a = "{{name}}" b = "/x/{{ name }}/y" {# a comment #}`,
		`{{ env.get('PPML_UNSET_VAR', 'dflt') }} {{ gramine.runtimedir(libc='glibc') }} {{ gramine.libos }}`,
		`{{ 'y' if name == "app" else 'n' }}{{ 'y' if not empty else 'n' }}{{ empty or 'dflt' }}{{ name and 'both' }}`,
		`{{ 1 }} {{ true }} {{ None }} {{ (name) }} {{ 'it\'s\\' }} {{ name != 'x' }}`,
		"{% if name == 'app' %}yes{% else %}no{% endif %}|{% if empty %}yes{% endif %}",
		"{% for p in paths %}{{ p }} {{ p.is_dir() }} {{ p.exists(x=1) }}{% endfor %}",
		"{% for p in nope %}{% endfor %}{{ name( }}{{ name.upper }}{% endif %}",
		"{% if name is defined %}{{ nope is not defined }}{% endif %}{{ name is }}{{ name.x is defined }}",
	} {
		f.Add(seed)
	}
	if b, err := os.ReadFile("testdata/pytorch-like.manifest.template"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, template string) {
		nodes, err := parseTemplate(template)
		if err == nil {
			r := &renderer{
				opts: &RenderOptions{LibOS: "/opt/libos", RuntimeDir: "/opt/runtime"},
				vars: map[string]any{"name": "app", "empty": "", "paths": []any{pathValue("/nonexistent/ppml-fuzz")}},
			}
			r.globals = map[string]any{"gramine": namespace{"gramine", r.gramine}, "env": namespace{"env", envAttr}}
			var b strings.Builder
			err = r.render(&b, nodes)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "line ") {
			t.Fatalf("an error without the template's line: %v", err)
		}
	})
}
