// Package tdx verifies Intel TDX DCAP quotes and produces them inside a TD.
//
// [Verifier] checks a quote (version 4, TEE type TDX) offline through
// github.com/google/go-tdx-guest's verify package: the PCK certificate chain from the quote to the
// pinned Intel SGX Root CA, revocation with the PCK and root CA CRLs, the QE report and quote
// signatures, the TDX TCB info and TD_QE identity with their signatures, issuer chains and
// validity, the FMSPC, PCE-ID, TDX module signer and attributes, and the TCB levels. The
// collateral comes from a [collateral.Bundle], which the Verifier serves to go-tdx-guest in place of
// Intel's Provisioning Certification Service, so nothing is fetched over the network, and the
// verification time is the caller's: no step reads the wall clock.
//
// go-tdx-guest accepts a quote only if the platform's TCB level, the TDX module's level and the
// Quoting Enclave's level are all UpToDate. A quote whose TCB is OutOfDate (or any status but
// UpToDate) therefore fails with [ErrTCBNotUpToDate] instead of being reported in the claims for
// a policy to judge, and a platform below every TCB level fails with [ErrTCBLevelNotSupported].
// The package matches the TCB levels itself (see the README of testdata/attestation: SGX
// components and PCESVN against the PCK certificate, TDX components against TEE_TCB_SVN, the TDX
// module against its identity "TDX_%02X") to name the status and advisories in claims and errors.
//
// Bytes after the quote's signature data (quote buffer padding that some quote generation
// services leave) are ignored, as go-tdx-guest does: no signature covers them.
//
// Limits of go-tdx-guest v0.3.1, the newest release: quotes of version 5 (TDX 1.5 bodies) are
// refused with [ErrUnsupported]; a TCB info whose FMSPC is upper-case hex (Intel serves either
// case, and the signature covers it) fails the FMSPC comparison; and its parser panics on some
// malformed quotes, which Verify turns into errors.
//
// [Attester] produces quotes through the Linux configfs-tsm report interface
// (/sys/kernel/config/tsm/report) with github.com/google/go-configfs-tsm.
package tdx
