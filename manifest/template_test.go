package manifest

import (
	"fmt"
	"strings"
	"testing"
)

func TestLexExpr(t *testing.T) {
	toks, err := lexExpr(`f(x, 'a\'b' , k=12) != none.y`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tok := range toks {
		got = append(got, fmt.Sprintf("%v %s", tok.kind, tok.text))
	}
	want := "name f|operator (|name x|operator ,|string a'b|operator ,|name k|operator =|integer 12|operator )|operator !=|name none|operator .|name y"
	if strings.Join(got, "|") != want {
		t.Errorf("tokens\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
}
