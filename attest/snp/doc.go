// Package snp verifies AMD SEV-SNP attestation reports and produces them inside an SNP guest.
//
// Evidence is an attestation report (1184 bytes, the AMD SEV-SNP ABI's ATTESTATION_REPORT)
// optionally followed by the certificate table that the host hands the guest with an extended
// report (GHCB format: GUID, offset, length entries, then the certificates), which is what
// go-sev-guest's quote providers and configfs-tsm's outblob and auxblob give.
//
// [Verifier] checks a report offline with github.com/google/go-sev-guest: verify checks that the
// report's endorsement key certificate (VCEK, or VLEK for cloud providers) chains to the AMD root
// of the report's product line (ARK, through the ASK or ASVK) at the verification time and that
// the key signed the report; then the report must match its certificate: REPORTED_TCB is the
// certificate's TCB (else that VCEK is not the one of the report's TCB), at most CURRENT_TCB;
// CHIP_ID is the VCEK's HWID (unless masked); the committed TCB and firmware are at most the
// current ones; VMPL is 0 to 3. The endorsement certificate comes from the evidence's
// certificate table, else from those the Verifier was given (fetched from AMD's Key Distribution
// Service beforehand). Nothing is fetched over the network and no step reads the wall clock.
//
// AMD publishes no TCB levels, so the TCB status says how far the platform vouches for what it
// runs: UpToDate when REPORTED_TCB, COMMITTED_TCB and CURRENT_TCB are the same and the committed
// firmware is the current one; ConfigurationNeeded when the firmware runs newer than the report's
// key vouches for (REPORTED_TCB below CURRENT_TCB: the host has not reported its current TCB) or
// is provisional (not committed, so it can be rolled back), with the reasons in the claims. What
// TCB is recent enough is the relying party's policy (provision's min_tcb), as are the guest
// policy (debug, SMT, migration agent), the VMPL and HOSTDATA, which the claims carry decoded
// (attest.SNPClaims).
//
// The product line (Milan, Genoa, Turin) comes from the report's CPUID fields (report version 3
// and later), else from the certificate's product name, and can be constrained with
// Options.Product; it also says how TCB_VERSION is laid out (Turin's has an FMC part first).
// go-sev-guest v0.15.0 refuses certificates with the FMC extension (OID 1.3.6.1.4.1.3704.1.3.9)
// that Turin VCEKs carry, so Turin reports do not verify yet.
//
// Revocation is checked against AMD's CRLs, given to the Verifier (Options.CRLs), never fetched
// (crl.go): each signed by its product line's ARK, current at the verification time, revoking
// neither the ASK nor the ASVK that signed the report's key; a product line without a CRL is
// refused unless Options.SkipCRL, and the claims say whether revocation was checked.
//
// [Attester] produces evidence through configfs-tsm (github.com/google/go-configfs-tsm) or any
// go-sev-guest quote provider, such as the /dev/sev-guest one.
package snp
