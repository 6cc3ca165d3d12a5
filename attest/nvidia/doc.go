// Package nvidia verifies the attestation evidence of NVIDIA confidential-computing GPUs (Hopper
// and Blackwell) in pure Go, offline.
//
// The evidence is an SPDM 1.1 GET_MEASUREMENTS request (37 bytes, the 32-byte nonce at offset 4)
// followed by the GPU's signed MEASUREMENTS response: measurement blocks, opaque data (driver and
// VBIOS versions, project and SKU, FWID, ...) and a raw 96-byte ECDSA P-384 signature (r ‖ s).
// [Verify] checks, in order:
//
//  1. the evidence parses strictly (every length consistent; bytes after the signature are
//     reported, not signed, and ignored, as real GPUs append them);
//  2. the device certificate chain leads, at the verification time, to the pinned NVIDIA Device
//     Identity CA ([DeviceRoots]);
//  3. the FWID of the opaque data equals the leaf's (extension 2.23.133.5.4.1: the Hopper
//     composite-identity form or a DICE TcbInfo);
//  4. the signature, with the leaf's key, over SHA-384 of the request ‖ the response up to the
//     signature (SPDM 1.1's L1 transcript);
//  5. the request nonce is the caller's;
//  6. revocation, from recorded OCSP responses ([OCSPDir]): every certificate NVIDIA's OCSP
//     service answers for, in the device chain and the RIM chains; revoked is refused, and
//     certificateHold too unless allowed;
//  7. reference values: the driver and VBIOS RIMs (SWID tags with enveloped XML signatures,
//     C14N 1.1, ECDSA-SHA384) chained to the pinned NVIDIA CoRIM signing Root CA ([RIMRoots]),
//     valid at the verification time, for the versions the GPU reports and a chip of its
//     architecture (the RIM's product against the device chain's); every active RIM index
//     i is compared with measurement block i+1, any of its alternatives matching.
//
// No step reads the wall clock or the network: the caller gives the time, the RIMs and the
// OCSP responses. A [Fetcher] fills folders with them from NVIDIA's RIM and OCSP services.
// Every failure is an [*Error] naming its [Step].
package nvidia
