package pf

import "path"

// NormalizePath normalizes p as Gramine does before binding or checking a path: "." and empty
// components go, ".." removes the component before it where there is one, and a trailing slash
// goes. Relative paths stay relative; "." becomes the empty string.
func NormalizePath(p string) string {
	if p == "" {
		return ""
	}
	c := path.Clean(p)
	if c == "." {
		return ""
	}
	return c
}
