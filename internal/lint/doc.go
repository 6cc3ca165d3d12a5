// Package lint holds tests that hold the whole module to the conventions of docs/design.md
// which the compiler and go vet do not check. It has no code of its own.
package lint
