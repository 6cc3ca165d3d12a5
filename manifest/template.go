package manifest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file is the small subset of Jinja that Gramine's manifest templates use; the package
// documentation lists it.

// A template is a list of nodes: textNode, *outputNode, *forNode or *ifNode. Each renders
// itself (render.go).
type node interface {
	render(r *renderer, b *strings.Builder) error
}

// textNode is text outside tags, written as it is.
type textNode string

// outputNode is {{ e }}.
type outputNode struct {
	line int
	e    expr
}

// forNode is {% for name in seq %} body {% endfor %}.
type forNode struct {
	line int
	name string
	seq  expr
	body []node
}

// ifNode is {% if cond %} then {% else %} els {% endif %}.
type ifNode struct {
	line      int
	cond      expr
	then, els []node
}

// An expression is a literal, name, attr, call, negation, operation or conditional. Each
// evaluates itself (render.go).
type expr interface {
	eval(r *renderer) (any, error)
}

// Expressions.
type (
	literal struct{ v any }
	name    string
	attr    struct {
		x    expr
		name string
	}
	call struct {
		fn     expr
		args   []expr
		kwargs map[string]expr
	}
	negation struct { // not x
		x expr
	}
	operation struct { // x op y, op one of == != and or
		op   string
		x, y expr
	}
	conditional struct { // then if test else els
		then, test, els expr
	}
)

// templateParser splits a template into nodes.
type templateParser struct {
	src  string
	pos  int
	line int // the line at pos
}

func parseTemplate(src string) ([]node, error) {
	p := &templateParser{src: src, line: 1}
	nodes, end, line, err := p.nodes()
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, fmt.Errorf("line %d: {%% %s %%} without a block to end", line, end)
	}
	return nodes, nil
}

// advance moves n bytes on.
func (p *templateParser) advance(n int) {
	p.line += strings.Count(p.src[p.pos:p.pos+n], "\n")
	p.pos += n
}

// nodes parses up to the end of the template or to a tag that ends the enclosing block (else,
// endfor, endif), which it returns with its line.
func (p *templateParser) nodes() (nodes []node, end string, endLine int, err error) {
	for p.pos < len(p.src) {
		i := indexTag(p.src[p.pos:])
		if i < 0 {
			i = len(p.src) - p.pos
		}
		if i > 0 {
			nodes = append(nodes, textNode(p.src[p.pos:p.pos+i]))
			p.advance(i)
			continue
		}
		open := p.src[p.pos : p.pos+2]
		closing := map[string]string{"{{": "}}", "{%": "%}", "{#": "#}"}[open]
		line := p.line
		j := strings.Index(p.src[p.pos+2:], closing)
		if j < 0 {
			return nil, "", 0, fmt.Errorf("line %d: %s without %s", line, open, closing)
		}
		inner := p.src[p.pos+2 : p.pos+2+j]
		p.advance(j + 4)
		if open == "{#" {
			continue
		}
		if strings.HasPrefix(inner, "-") || strings.HasSuffix(inner, "-") {
			return nil, "", 0, fmt.Errorf("line %d: whitespace control (%s- or -%s) is not supported", line, open, closing)
		}
		if open == "{{" {
			e, err := parseExpr(inner)
			if err != nil {
				return nil, "", 0, fmt.Errorf("line %d: %w", line, err)
			}
			nodes = append(nodes, &outputNode{line, e})
			continue
		}
		n, end, err := p.statement(inner, line)
		if err != nil || end != "" {
			return nodes, end, line, err
		}
		nodes = append(nodes, n)
	}
	return nodes, "", 0, nil
}

// indexTag returns the position of the first {{, {% or {# in s, or -1.
func indexTag(s string) int {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '{' && (s[i+1] == '{' || s[i+1] == '%' || s[i+1] == '#') {
			return i
		}
	}
	return -1
}

// statement parses the tag {% inner %} on line, and the block it opens. For a tag that ends a
// block it returns the tag's name instead.
func (p *templateParser) statement(inner string, line int) (node, string, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
	}
	keyword, rest, _ := strings.Cut(strings.TrimSpace(inner), " ")
	rest = strings.TrimSpace(rest)
	// block parses a block's body, which must end with one of ends.
	block := func(ends ...string) ([]node, string, error) {
		body, end, _, err := p.nodes()
		if err == nil && !slices.Contains(ends, end) {
			err = fail("{%% %s %%} has no {%% %s %%}", keyword, ends[len(ends)-1])
		}
		return body, end, err
	}
	switch keyword {
	case "for":
		name, seq, ok := strings.Cut(rest, " in ")
		name = strings.TrimSpace(name)
		if !ok || !isName(name) {
			return nil, "", fail("write {%% for NAME in EXPRESSION %%}")
		}
		e, err := parseExpr(seq)
		if err != nil {
			return nil, "", fail("%v", err)
		}
		body, _, err := block("endfor")
		return &forNode{line, name, e, body}, "", err
	case "if":
		e, err := parseExpr(rest)
		if err != nil {
			return nil, "", fail("%v", err)
		}
		n := &ifNode{line: line, cond: e}
		var end string
		if n.then, end, err = block("else", "endif"); err == nil && end == "else" {
			n.els, _, err = block("endif")
		}
		return n, "", err
	case "else", "endfor", "endif":
		if rest != "" {
			return nil, "", fail("{%% %s %%} takes nothing more", keyword)
		}
		return nil, keyword, nil
	}
	return nil, "", fail("{%% %s %%} is not supported (only for, if and else are)", keyword)
}

func isName(s string) bool {
	for i, r := range s {
		if !(r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9') {
			return false
		}
	}
	return s != "" && !slices.Contains(keywords, s)
}

var keywords = []string{"and", "or", "not", "if", "else", "in", "is", "true", "false", "none", "True", "False", "None"}

// Expression tokens.
type token struct {
	kind tokenKind
	text string // for a string, its value without quotes or escapes
}

type tokenKind int

const (
	nameToken     tokenKind = iota + 1 // a name or keyword: letters, digits and _
	stringToken                        // a quoted string
	integerToken                       // decimal digits
	operatorToken                      // == != ( ) . , =
)

func (k tokenKind) String() string {
	switch k {
	case nameToken:
		return "name"
	case stringToken:
		return "string"
	case integerToken:
		return "integer"
	case operatorToken:
		return "operator"
	}
	return fmt.Sprintf("tokenKind(%d)", int(k))
}

func lexExpr(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			j := i + 1
			for j < len(src) && (src[j] == '_' || 'a' <= src[j] && src[j] <= 'z' || 'A' <= src[j] && src[j] <= 'Z' || '0' <= src[j] && src[j] <= '9') {
				j++
			}
			toks = append(toks, token{nameToken, src[i:j]})
			i = j
		case '0' <= c && c <= '9':
			j := i + 1
			for j < len(src) && '0' <= src[j] && src[j] <= '9' {
				j++
			}
			toks = append(toks, token{integerToken, src[i:j]})
			i = j
		case c == '\'' || c == '"':
			s, n, err := lexString(src[i:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{stringToken, s})
			i += n
		case strings.HasPrefix(src[i:], "==") || strings.HasPrefix(src[i:], "!="):
			toks = append(toks, token{operatorToken, src[i : i+2]})
			i += 2
		case strings.IndexByte("().,=", c) >= 0:
			toks = append(toks, token{operatorToken, src[i : i+1]})
			i++
		default:
			return nil, fmt.Errorf("unexpected %q in an expression", src[i:])
		}
	}
	return toks, nil
}

// lexString reads the quoted string at the start of s: its value, and its length in s.
func lexString(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == s[0]:
			return b.String(), i + 1, nil
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '\\', '\'', '"':
				b.WriteByte(s[i])
			default:
				b.WriteByte('\\')
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("a string has no closing quote")
}

// exprParser parses an expression by recursive descent:
//
//	expr    = or [ "if" or "else" expr ]
//	or      = and { "or" and }
//	and     = not { "and" not }
//	not     = "not" not | compare
//	compare = postfix [ ( "==" | "!=" ) postfix | "is" [ "not" ] "defined" ]
//	postfix = primary { "." NAME | "(" [ arg { "," arg } ] ")" }
//	arg     = [ NAME "=" ] expr
//	primary = NAME | STRING | INTEGER | "(" expr ")"
type exprParser struct {
	toks []token
	i    int
}

func parseExpr(src string) (expr, error) {
	toks, err := lexExpr(src)
	if err != nil {
		return nil, err
	}
	p := &exprParser{toks: toks}
	e, err := p.expr()
	if err == nil && p.i < len(p.toks) {
		err = fmt.Errorf("unexpected %q in an expression", p.toks[p.i].text)
	}
	return e, err
}

// accept consumes the next token if it is the name or operator text.
func (p *exprParser) accept(text string) bool {
	if p.i < len(p.toks) && p.toks[p.i].kind != stringToken && p.toks[p.i].text == text {
		p.i++
		return true
	}
	return false
}

func (p *exprParser) expect(text string) error {
	if !p.accept(text) {
		return fmt.Errorf("expected %q in an expression", text)
	}
	return nil
}

func (p *exprParser) expr() (expr, error) {
	e, err := p.or()
	if err != nil || !p.accept("if") {
		return e, err
	}
	test, err := p.or()
	if err != nil {
		return nil, err
	}
	if err := p.expect("else"); err != nil {
		return nil, err
	}
	els, err := p.expr()
	return conditional{e, test, els}, err
}

func (p *exprParser) or() (expr, error)  { return p.chain("or", p.and) }
func (p *exprParser) and() (expr, error) { return p.chain("and", p.not) }

// chain parses operands joined by the operator op.
func (p *exprParser) chain(op string, operand func() (expr, error)) (expr, error) {
	x, err := operand()
	for err == nil && p.accept(op) {
		var y expr
		y, err = operand()
		x = operation{op, x, y}
	}
	return x, err
}

func (p *exprParser) not() (expr, error) {
	if p.accept("not") {
		x, err := p.not()
		return negation{x}, err
	}
	x, err := p.postfix()
	if err != nil {
		return nil, err
	}
	for _, op := range []string{"==", "!="} {
		if p.accept(op) {
			y, err := p.postfix()
			return operation{op, x, y}, err
		}
	}
	if p.accept("is") {
		return p.isDefined(x)
	}
	return x, nil
}

func (p *exprParser) postfix() (expr, error) {
	x, err := p.primary()
	for err == nil {
		switch {
		case p.accept("."):
			if p.i >= len(p.toks) || p.toks[p.i].kind != nameToken {
				return nil, errors.New("expected a name after '.'")
			}
			x = attr{x, p.toks[p.i].text}
			p.i++
		case p.accept("("):
			c := call{fn: x, kwargs: map[string]expr{}}
			for err == nil && !p.accept(")") {
				if len(c.args)+len(c.kwargs) > 0 {
					if err = p.expect(","); err != nil {
						break
					}
				}
				var arg expr
				if p.i+1 < len(p.toks) && p.toks[p.i].kind == nameToken && p.toks[p.i+1].text == "=" {
					kw := p.toks[p.i].text
					p.i += 2
					arg, err = p.expr()
					c.kwargs[kw] = arg
				} else {
					arg, err = p.expr()
					c.args = append(c.args, arg)
				}
			}
			x = c
		default:
			return x, nil
		}
	}
	return nil, err
}

func (p *exprParser) primary() (expr, error) {
	if p.i >= len(p.toks) {
		return nil, errors.New("an expression ends too early")
	}
	t := p.toks[p.i]
	p.i++
	switch t.kind {
	case stringToken:
		return literal{t.text}, nil
	case integerToken:
		n, err := strconv.ParseInt(t.text, 10, 64)
		return literal{n}, err
	case nameToken:
		switch t.text {
		case "true", "True":
			return literal{true}, nil
		case "false", "False":
			return literal{false}, nil
		case "none", "None":
			return literal{nil}, nil
		}
		if !isName(t.text) {
			return nil, fmt.Errorf("unexpected %q in an expression", t.text)
		}
		return name(t.text), nil
	case operatorToken:
		if t.text == "(" {
			e, err := p.expr()
			if err == nil {
				err = p.expect(")")
			}
			return e, err
		}
	}
	return nil, fmt.Errorf("unexpected %q in an expression", t.text)
}
