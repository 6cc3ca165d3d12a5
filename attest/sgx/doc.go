// Package sgx is ppml's Intel DCAP engine: it parses and verifies ECDSA P-256 DCAP quotes of
// versions 3, 4 and 5, of SGX enclaves and of TDX trust domains (TD 1.0 and TD 1.5 bodies), in
// pure Go, and reads the SIGSTRUCT of Gramine .sig files. attest/tdx and attest/sim build on it.
//
// [Verify] follows the steps of Intel's Quote Verification Library:
//
//  1. parse the quote (every length within the signature data consistent; bytes after it are
//     ignored, as QVL ignores them, and counted in Quote.Trailing);
//  2. verify the PCK certificate chain from the quote (PCK leaf → Platform or Processor CA → the
//     pinned Intel SGX Root CA) at the verification time and read the leaf's SGX extension
//     (FMSPC, PCE-ID, TCB component SVNs, PCESVN);
//  3. check revocation with the root CA CRL and the PCK CRL (signed by their issuers, current);
//  4. verify the QE report signature with the PCK key and that the QE report data binds the
//     attestation key and QE authentication data;
//  5. verify the quote signature over header ‖ (body descriptor ‖) report body with the
//     attestation key;
//  6. check the QE identity ("QE" for SGX, "TD_QE" for TDX: signature, validity, MRSIGNER,
//     ISVPRODID, MISCSELECT and ATTRIBUTES under their masks) and find the QE's TCB level;
//  7. check the TCB info (signature, validity, id "SGX" or "TDX" matching the quote, FMSPC and
//     PCE-ID);
//  8. for a TD, check the TDX module's MRSIGNERSEAM and SEAMATTRIBUTES against the TCB info's
//     tdxModule or its module identity "TDX_%02X";
//  9. select the platform's TCB level, the module's and the QE's, and converge their statuses,
//     with the TD relaunch advice for TD 1.5 (tcb.go has the rules).
//
// Every status but Revoked is a verdict ([Verdict]: status, advisories, the TCB date, the
// evaluation data number, the module's and QE's statuses, the components behind); a platform,
// module or QE below every level is [ErrTCBLevelNotSupported].
//
// The TCB info and QE identity signatures are ECDSA P-256 over the exact bytes of the signed JSON
// object, so the collateral is kept as received ([collateral.Bundle]). No step reads the wall
// clock: the caller gives the verification time. The roots of trust are the caller's too
// (Options.Roots), so a simulated PKI can stand for Intel's.
//
// Two types verify many quotes:
//   - a [Verifier] holds one collateral bundle, whose signatures it checks once, and returns the
//     full [Verdict] of each quote against it (what attest/sim and attest/tdx build on);
//   - an [IntelVerifier] is the attest.Verifier of genuine platforms: it trusts Intel's root,
//     gets each platform's collateral from a collateral.Source under the caller's context, keeps
//     a Verifier per platform until the collateral's next update, and returns attest.Claims.
package sgx
