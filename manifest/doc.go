// Package manifest owns ppml's workload manifests: Gramine-compatible TOML manifests, the
// templates they are rendered from, the hashing of their trusted files, the workload
// measurement that the simulated platform reports as MRENCLAVE, and manifest signatures, whose
// signer's key gives MRSIGNER.
//
// # Keys
//
// A manifest is checked against Gramine's manifest schema, as gramine-manifest does: a key
// Gramine does not know is an error naming it. Of Gramine's keys ppml uses
//
//	libos.entrypoint                     the first executable (required)
//	loader.argv                          its arguments, or
//	loader.insecure__use_cmdline_argv    the command line's (not both)
//	loader.env.NAME                      "VALUE", { value = "VALUE" } or { passthrough = true }
//	loader.insecure__use_host_env        the host's environment, loader.env over it (insecure)
//	loader.log_level                     none, error (default), warning, debug, trace, all
//	loader.uid, loader.gid               the user and group the workload runs as (default
//	                                     65534, nobody and nogroup; Gramine's is 0)
//	fs.root                              { type = "chroot" (default) | "tmpfs", uri }: the
//	                                     root, under fs.mounts; by default, as in Gramine,
//	                                     { type = "chroot", uri = "file:." }, the folder ppml
//	                                     runs in
//	fs.start_dir                         the working folder (default "/")
//	fs.mounts                            { type = "chroot" (default) | "encrypted" | "tmpfs",
//	                                       path = "/ABSOLUTE", uri = "file:HOST-PATH",
//	                                       key_name = "default" (encrypted only) }
//	sgx.trusted_files                    "file:PATH", "file:FOLDER/" or { uri, sha256 }
//	sgx.allowed_files                    "file:PATH"
//	sgx.file_check_policy                strict (default): plain mounts hold only trusted and
//	                                     allowed files; allow_all_but_log: their other files too
//	sgx.debug, sgx.isvprodid, sgx.isvsvn reported with the measurement
//	sgx.remote_attestation               none (default) or dcap
//
// Besides Gramine's keys, ppml has its own, in the ppml table (see docs/run.md, *Network*):
//
//	ppml.network                         none (default): a network namespace of its own with
//	                                     loopback only; host: the host's network; mesh:
//	                                     loopback and an encrypted tunnel to the job's nodes
//	ppml.job                             with mesh: the job of the server's policy to join
//	ppml.gpus                            "all", or how many NVIDIA GPUs the workload gets
//
// and it takes the secret-provisioning settings from the variables of Gramine's
// libsecret_prov_attest.so: loader.env.SECRET_PROVISION_SERVERS (host:port list separated by
// commas, semicolons or spaces; default localhost:4433), SECRET_PROVISION_CA_CHAIN_PATH and
// SECRET_PROVISION_SET_KEY, which must have values in the manifest (see Provisioning).
//
// Keys that mean something only to an SGX enclave or to Gramine's LibOS are accepted, checked
// for type and ignored: loader.log_file, loader.insecure__disable_aslr,
// libos.check_invalid_pointers, every other sgx.* key (enclave_size, max_threads, edmm_enable,
// use_exinfo, cpu_features, profile, seal_key, ...) and all of sys.*; so is
// loader.entrypoint, Gramine's LibOS, in any form.
// The Gramine keys whose meaning ppml cannot honour are errors that say what to do instead:
// loader.argv_src_file, loader.env_src_file, fs.insecure__keys, an encrypted fs.root and
// untrusted_shm mounts, as are the old keys Gramine itself rejects (sgx.thread_num,
// fs.mount.NAME, loader.preload, ...). A key of the ppml table that ppml does not know is an
// error that lists ppml's keys.
//
// # Canonical form and measurement
//
// The canonical form of a manifest is a TOML text that depends only on the data the manifest
// holds, not on how it is written (whitespace, comments, key order, dotted keys or [tables],
// quoting, number syntax). It is, in UTF-8:
//
//   - the line "# ppml manifest, canonical form 1";
//   - then one line "KEY = VALUE" for each value that is not a table, in depth-first order with
//     the keys of each table sorted bytewise. KEY is the value's full dotted key; VALUE is
//     written as below. Tables leave no line of their own, so an empty table leaves nothing.
//
// Each line, the last included, ends with "\n". Key parts are written bare when they are
// letters, digits, '_' and '-', else as strings. Strings are TOML basic strings ("...") in which
// '"' and '\' are escaped as \" and \\, the control characters U+0008, U+0009, U+000A, U+000C and
// U+000D as \b, \t, \n, \f and \r, the other ones below U+0020 and U+007F as \uXXXX (uppercase
// hex), and every other character is written as it is. Integers are in decimal; floats are Go's
// strconv.FormatFloat(f, 'g', -1, 64) with ".0" added when that has neither '.' nor 'e', or
// inf, -inf, nan; booleans are true and false. Tables inside arrays are inline tables
// "{ k = v, k2 = v2 }" with sorted keys ("{}" when empty). An array that is the value of a line
// and not empty is written one element per line, "[\n", then "  ELEMENT,\n" for each, then "]";
// other arrays are "[e1, e2]". Dates and times are not allowed in manifests.
//
// The workload measurement (Measure) is the SHA-256 of the canonical form. Trusted files enter
// it through the hashes that sgx.trusted_files holds, so any change to a trusted file, as to any
// value of the manifest, changes the measurement. Like every key, loader.uid and loader.gid
// enter it as they are written: a manifest that leaves them out, and so runs as nobody, measures
// differently from one that writes loader.uid = 65534. Render writes manifests in canonical form,
// so for a manifest it wrote the measurement is simply the SHA-256 of the file.
//
// # Templates
//
// Render takes the templates of gramine-manifest, whose Jinja it implements in part:
//
//   - {{ EXPRESSION }} writes the value: a string or path as it is, an integer in decimal,
//     True, False or None; anything else is an error.
//   - {% for NAME in EXPRESSION %} ... {% endfor %} loops over a list;
//     {% if EXPRESSION %} ... {% else %} ... {% endif %} (else optional); {# comment #}.
//     Whitespace control ({%- -%}) and other statements are errors.
//   - Expressions: names; 'strings' and "strings" with \n, \t, \\, \' and \" escapes;
//     integers; true, false, none (also capitalised); attribute access (a.b); calls with
//     positional and keyword arguments; == and !=; not, and, or; A if TEST else B; NAME is
//     defined and NAME is not defined, for an optional define.
//   - Names are the defines (strings), then the globals: gramine.libos and
//     gramine.runtimedir() (see RenderOptions); python.stdlib, python.platstdlib,
//     python.purelib, python.distlib, python.ext_suffix and python.get_path(NAME) from
//     /usr/bin/python3's sysconfig, as gramine-manifest gives them; python.get_sys_path(PYTHON),
//     the entries of that interpreter's sys.path that exist, as paths with is_dir(), is_file()
//     and exists(); env.NAME, an environment variable, and env.get(NAME[, DEFAULT]).
//   - As with Jinja's StrictUndefined, an undefined name or attribute is an error giving the
//     template line.
//
// Gramine's ldd(), python.get_config_var, python.get_paths, python.implementation and
// gramine.pkglibdir are not supported.
//
// # Signatures
//
// Sign makes the simulated platform's counterpart of Gramine's SIGSTRUCT: a signature by an
// Ed25519 or ECDSA P-256 key over the measurement, sgx.isvprodid, sgx.isvsvn and sgx.debug,
// kept as JSON in MANIFEST.sig. MRSIGNER is the SHA-256 of the signer's public key in DER
// SubjectPublicKeyInfo form.
package manifest
