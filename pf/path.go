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

// BoundPath returns the path that Gramine binds into the protected file at rel, a slash-separated
// path inside a mount whose URI path (the URI less "file:") is prefix: the normalized path of
// prefix joined with rel, or of rel alone when prefix is empty (a URI of "file:" or "file:.").
// Opened with Options.CheckPath under another path, the file fails with ErrPath.
func BoundPath(prefix, rel string) string {
	if prefix == "" {
		return NormalizePath(rel)
	}
	return NormalizePath(prefix + "/" + rel)
}
