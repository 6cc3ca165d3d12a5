// Package provision is ppml's secret provisioning: the server that releases data owners' keys to
// workloads that prove, by RA-TLS, that they are what the owner's policy admits, and the client
// that asks for them.
//
// The server speaks Gramine's wire protocol, so that an unmodified Gramine enclave using
// libsecret_prov_attest.so gets its key, and a ppml extension that fetches several named keys in
// one connection and tells a refused client why. Every decision is written to the audit log.
package provision
