// Package sandbox launches a workload from its manifest, as Gramine's loader does: it provisions
// the keys of the encrypted mounts, builds the workload's view of the filesystem from fs.root
// (by default, as in Gramine, the folder ppml runs in) and fs.mounts in a private mount
// namespace, where each trusted file is checked when first opened, and runs
// libos.entrypoint there with the manifest's arguments and environment.
//
// # Start-up
//
// Run goes through these steps, each of which stops the start with an error naming what failed:
//
//  1. Every trusted file is found on the host, its symbolic links resolved; a missing one stops
//     the start. Its content is checked when the workload first opens it (step 4).
//  2. When the manifest has encrypted mounts, their keys (KeyNames) are fetched from the servers of
//     loader.env.SECRET_PROVISION_SERVERS over RA-TLS, trusting the CA certificate at
//     SECRET_PROVISION_CA_CHAIN_PATH, which must be a trusted file inside one of the mounts, read
//     once and checked as it is read (manifest.Manifest.ReadTrustedFile). The
//     workload attests with Options.Attester, which the caller chooses (for the simulated
//     platform, package attest/sim and its WorkloadEnclave). Without encrypted mounts nothing is attested, as with gramine-direct.
//     An existing file of a single-file encrypted mount must then open with its key, so that a
//     wrong key or a left-over output stops the start instead of failing the workload later.
//  3. ppml re-executes itself (/proc/self/exe, the very binary running) in a new mount namespace
//     as the sandbox process. Its configuration and the keys reach it through an inherited pipe:
//     never a file, the command line or the environment; every copy of a key is cleared once the
//     encrypted filesystems hold it, and they wipe theirs when unmounted.
//  4. The sandbox process makes every mount private, mounts a tmpfs on /tmp (of its own
//     namespace) with a recursive copy of the host's tree at /tmp/host and the workload's root,
//     an empty read-only tmpfs, at /tmp/root. It serves the read-only chroot mounts with package
//     trustfs, one filesystem at /tmp/trustfs that holds each mount's trusted files as
//     sgx.file_check_policy says (see stageConfig.check), each checked when first opened and
//     served as it was checked; those that the last run of the manifest opened are checked
//     ahead of their opens (Options.CheckAhead). In the root, fs.root first (unless it would be
//     empty under strict: the root is then the empty tmpfs), then the devices and the CPU's
//     description below, then fs.mounts in the manifest's order, it bind-mounts each chroot
//     mount at its declared path: what trustfs serves of it, read-only, with each
//     sgx.allowed_files entry inside it bound writable over itself, or the host path as it is for
//     a mount the workload may write, or one without trusted files under allow_all_but_log;
//     serves each encrypted mount with package encfs (files bound to the mount's URI path as
//     Gramine binds them, relative to the folder ppml runs in) and mounts an empty tmpfs for
//     each tmpfs mount. Like Gramine's LibOS it also provides /dev/null,
//     /dev/zero, /dev/full, /dev/random and /dev/urandom, which a mount at /dev hides, and the
//     CPU's description (/proc/cpuinfo, /sys/devices/system/{cpu,node}), read-only. Nothing
//     else of the host is in the view: no /proc, /sys or /etc unless the manifest mounts them.
//     A mount point that the mount around it lacks is made in the view, never on the host
//     (view.shadow), and where the view lacks the dynamic loader that the entrypoint names
//     but /lib, where Gramine's manifests mount its runtime, holds one of that name, the
//     loader's path becomes a link to it (view.provideLoader), as Gramine runs every program
//     with its runtime's loader.
//  5. The sandbox process starts ppml once more, as the workload's init, in a mount namespace
//     of its own and in its own process group (the terminal's foreground group when its
//     standard input is the terminal). It receives its configuration over a pipe, and on the
//     thread that runs package initialisation: pivots into the root and detaches the host's
//     mounts; takes loader.uid and loader.gid (65534 by default) without supplementary groups;
//     drops every capability (the bounding and ambient sets included, with locked securebits so
//     that user 0 gains none on exec); sets no_new_privs; marks every descriptor but the
//     standard ones close-on-exec; installs the system-call filter of seccomp.go; changes to
//     fs.start_dir and starts libos.entrypoint as its child, which inherits all of that. A
//     failure before the entrypoint runs comes back to the sandbox process on a pipe, which the
//     init closes without a word once it does, and from Run as an error.
//
// Every mount of the view is nosuid and nodev but the device files. The workload reads and
// writes plain mounts with the host's permissions for its user (trustfs has the kernel check
// them); encrypted mounts (FUSE's allow_other) and tmpfs mounts (mode 1777) let any user in.
// The init is process 1 of a PID namespace of its own, with the workload its child: it reaps
// the workload's orphans and ends with the workload's status, and every process left in the
// namespace with it. The workload still shares the host's network, IPC, UTS and cgroup
// namespaces.
//
// A single-file encrypted mount whose file does not exist yet, such as the tutorial's
// result.txt, looks absent, as in Gramine: its path is a symbolic link into the volume that
// serves it (bound at /.ppml/encrypted/N in the view, serving its mounts' names alone), so that
// the file is made on the host when the workload makes it. An encrypted folder must exist.
// An sgx.allowed_files file of a read-only chroot mount that is not on the host yet looks
// absent the same way: its path is a symbolic link into /.ppml/allowed/N, where a trustfs of its
// own serves it alone (trustfs.Creatable) and makes the host file, loader.uid's, when the
// workload creates it (view.linkAllowed).
//
// # While it runs, and after
//
// The workload's standard input, output and error are Run's. The signals of Options.Signals are
// forwarded to the workload's process group. When the workload ends, the sandbox process kills
// what is left of its process group, unmounts the encrypted filesystems (which commits what was
// written and wipes their keys) and the trusted files' one, and reports the exit status (the
// workload's, or 128+N when signal N killed it) with what checking the trusted files it opened
// took (Result.Checked).
//
// Every way out leaves nothing behind on the host: the mounts exist only in the sandbox's mount
// namespace, which goes away with its last process. The sandbox process dies with ppml, and the
// workload with the sandbox process (a parent-death signal on each), so a crash of either, or of
// the FUSE server inside the sandbox process, ends the workload and the namespace with it.
//
// # The sandbox process
//
// A program that imports this package serves as its own sandbox process and as the workload's
// init: Run starts the running executable again with a name in argv[0] that the package's init
// function recognises ("ppml-sandbox", "ppml-workload"), and such a process never reaches the
// program's main. Run therefore needs Linux 5.12 or later, root (Run checks it first) and
// /dev/fuse for encrypted mounts.
package sandbox
