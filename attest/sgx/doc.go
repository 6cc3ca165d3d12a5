// Package sgx parses and verifies Intel SGX DCAP quotes (ECDSA P-256, quote version 3, and version
// 4 with TEE type SGX) in pure Go, and reads the SIGSTRUCT of Gramine .sig files.
//
// [Verify] follows the steps of Intel's Quote Verification Library:
//
//  1. parse the quote strictly (no trailing bytes, every length consistent);
//  2. verify the PCK certificate chain from the quote (PCK leaf → Platform or Processor CA → the
//     pinned Intel SGX Root CA) at the verification time and read the leaf's SGX extension
//     (FMSPC, PCE-ID, TCB component SVNs, PCESVN);
//  3. check revocation with the root CA CRL and the PCK CRL (signed by their issuers, current);
//  4. verify the QE report signature with the PCK key and that the QE report data binds the
//     attestation key and QE authentication data;
//  5. verify the quote signature over header ‖ report body with the attestation key;
//  6. check the QE identity (signature, validity, MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES
//     under their masks) and find the QE's TCB status from its ISVSVN;
//  7. check the TCB info (signature, validity, FMSPC and PCE-ID) and select the platform's TCB
//     level: the first whose 16 SGX component SVNs and PCESVN are all at most the PCK
//     certificate's;
//  8. merge the platform and QE statuses.
//
// The TCB info and QE identity signatures are ECDSA P-256 over the exact bytes of the signed JSON
// object, so the collateral is kept as received ([collateral.Bundle]). No step reads the wall
// clock: the caller gives the verification time.
//
// Two types verify many quotes:
//   - a [Verifier] holds one collateral bundle, whose signatures it checks once, and returns the
//     full [Verdict] of each quote against it (what attest/sim and attest/tdx build on);
//   - an [IntelVerifier] is the attest.Verifier of genuine platforms: it trusts Intel's root,
//     gets each platform's collateral from a collateral.Source under the caller's context, keeps
//     a Verifier per platform until the collateral's next update, and returns attest.Claims.
package sgx
