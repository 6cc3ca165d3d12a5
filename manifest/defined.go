package manifest

import "errors"

// defined is Jinja's test NAME is defined (negated: NAME is not defined): the one use of a
// name that a template may be rendered without, such as an optional -D define.
type defined struct {
	name    string
	negated bool
}

func (e defined) eval(r *renderer) (any, error) {
	_, v := r.vars[e.name]
	_, g := r.globals[e.name]
	return (v || g) != e.negated, nil
}

// isDefined parses what follows x is: [not] defined.
func (p *exprParser) isDefined(x expr) (expr, error) {
	negated := p.accept("not")
	if !p.accept("defined") {
		return nil, errors.New("only the tests 'is defined' and 'is not defined' are supported")
	}
	n, ok := x.(name)
	if !ok {
		return nil, errors.New("'is defined' tests a name")
	}
	return defined{string(n), negated}, nil
}
