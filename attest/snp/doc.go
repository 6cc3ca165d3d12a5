// Package snp verifies AMD SEV-SNP attestation reports and produces them inside an SNP guest.
//
// Evidence is an attestation report (1184 bytes, the AMD SEV-SNP ABI's ATTESTATION_REPORT)
// optionally followed by the certificate table that the host hands the guest with an extended
// report (GHCB format: GUID, offset, length entries, then the certificates), which is what
// go-sev-guest's quote providers and configfs-tsm's outblob and auxblob give.
//
// [Verifier] checks a report offline with github.com/google/go-sev-guest: verify checks that the
// report's endorsement key certificate (VCEK, or VLEK for cloud providers) chains to the AMD root
// of its product line (ARK, through the ASK or ASVK) at the verification time and that the key
// signed the report; validate checks that the report matches its certificate (CHIP_ID = the
// VCEK's HWID, REPORTED_TCB = the certificate's TCB, which is at most CURRENT_TCB; committed
// firmware no newer than current). The endorsement certificate comes from the evidence's
// certificate table, else from those the Verifier was given (fetched from AMD's Key Distribution
// Service beforehand). Nothing is fetched over the network and no step reads the wall clock.
//
// The product line (Milan, Genoa, Turin) comes from the report's CPUID fields (report version 3
// and later), else from the certificate's product name, and can be constrained with
// Options.Product. The guest policy (debug, SMT, migration agent) and the launch measurement are
// reported in the claims for a policy to judge, not checked. AMD's CRL (which revokes ASKs) is
// not checked: go-sev-guest only fetches it online.
//
// [Attester] produces evidence through configfs-tsm (github.com/google/go-configfs-tsm) or any
// go-sev-guest quote provider, such as the /dev/sev-guest one.
package snp
