// Package provision is ppml's secret provisioning server: it releases data owners' keys to
// workloads that prove, by RA-TLS, that they are what the owner's policy admits, and writes every
// decision to the audit log before any key leaves.
//
// The server speaks Gramine's wire protocol, so that an unmodified Gramine enclave using
// libsecret_prov_attest.so gets its key, and a ppml extension that fetches several named keys in
// one connection and tells a refused client why (package provision/wire). The client that
// workloads link is package provision/client; the roots of trust come from the configuration's
// trust.Settings (package attest/trust).
package provision
