// Package pf reads and writes Gramine protected files, the encrypted file format of Gramine's
// encrypted mounts and of gramine-sgx-pf-crypt.
//
// A protected file is a sequence of 4096-byte nodes: a metadata node holding the path the file is
// bound to, its size and its first 3072 bytes of plaintext; then a Merkle hash tree (MHT) of nodes
// holding the keys and GCM tags of the data nodes below them. Every node is AES-128-GCM encrypted
// under a fresh random key; the metadata key is derived from the 16-byte key derivation key (the
// "wrap key") with an AES-CMAC KDF.
//
// Format versions 1 (Gramine v1.0 to v1.8) and 2 (v1.9, which reads both) are read and written:
// version 2 unless [Options].Version says 1. A [File] gives random access with bounded memory;
// [Encrypt] and [Decrypt] convert whole files using every core.
package pf
