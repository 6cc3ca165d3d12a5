// Package tdx verifies Intel TDX DCAP quotes and produces them inside a TD.
//
// [Verifier] is the attest.Verifier of TDX quotes (versions 4 and 5, TD 1.0 and TD 1.5 bodies)
// against one collateral bundle. The checks are attest/sgx's DCAP engine, which follows Intel's
// Quote Verification Library step by step for SGX and TDX alike: the PCK chain and CRLs, the TDX
// TCB info and its TDX module identities, the TD_QE identity, the QE report and quote signatures,
// the TCB levels of the platform, the module and the QE, the convergence of their statuses and
// the TD relaunch advice. Every TCB status but Revoked is a verdict, reported in the claims for a
// policy to judge; a platform below every TCB level is an error. [NewIntelVerifier] gets each
// platform's collateral from a collateral.Source instead.
//
// [Attester] produces quotes through the Linux configfs-tsm report interface
// (/sys/kernel/config/tsm/report) with github.com/google/go-configfs-tsm.
//
// github.com/google/go-tdx-guest serves only as the oracle of a differential test: its v0.3.1
// cannot read quote version 5, refuses every status below UpToDate and does not converge the TDX
// module's status with the platform's.
package tdx
