package sandbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/cvm"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/pf"
	"github.com/ppml/ppml/trustfs"
)

// Options configure Run.
type Options struct {
	// Args are the workload's arguments from the command line, after argv[0]. The manifest must
	// allow them (loader.insecure__use_cmdline_argv).
	Args []string
	// Attester proves the workload's identity to the provisioning servers. Only a manifest with
	// encrypted mounts needs one.
	Attester attest.Attester
	// ConfidentialGPUs, if set, are the GPUs whose evidence the Attester gives, in
	// confidential-computing mode: Run sets them ready for work once the keys were released and
	// open the existing files, just before the workload starts, and never otherwise.
	ConfidentialGPUs ConfidentialGPUs
	// Stdin, Stdout and Stderr are the workload's; nil means the null device, as for os/exec.
	// The sandbox process also writes the encrypted filesystems' complaints to Stderr.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Signals are forwarded to the workload's process group while it runs. One that arrives
	// before the workload starts stops the start instead.
	Signals <-chan os.Signal
	// MeshEndpoint is where the other nodes of a mesh (ppml.network = "mesh") send this node's
	// WireGuard packets: an address of this host and a UDP port, on which ppml listens. The
	// zero address leaves the address to the provisioning server, which gives the other
	// nodes the one that this node's connection comes from; port 0 is any free port.
	MeshEndpoint netip.AddrPort
	// MeshMTU, unless 0, caps the MTU of the mesh's interface, which is otherwise the MTU of
	// the host's paths to the other nodes less WireGuard's overhead (mesh.Config.MTULimit).
	MeshMTU int
	// Log receives ppml's own messages: warnings, and the start-up's steps and their times at
	// level Info. Nil discards them.
	Log *slog.Logger
	// CheckAhead is a folder where Run keeps, for each manifest, the trusted files that its
	// workload opened, in order (the manifest's order file, see ahead.go), and from which the
	// next run of the manifest checks them ahead of their opens, beside the workload
	// (trustfs.Options.CheckAhead). "" checks each file on its first open only.
	CheckAhead string
}

// Result tells how the workload ended, where the time before it started went, and what
// checking its trusted files took.
type Result struct {
	// ExitCode is the workload's exit status, or 128+N when signal N killed it.
	ExitCode int
	// Checked is what checking the trusted files took while the workload ran: each was checked
	// when the workload first opened it, or ahead of that (Options.CheckAhead).
	Checked trustfs.Stats
	Timing
}

// Timing is where the time before the workload started went.
type Timing struct {
	// Keys is the time spent attesting, fetching the keys and checking that they open the
	// existing files of single-file encrypted mounts; zero without encrypted mounts.
	Keys time.Duration
	// Sandbox is the time from starting the sandbox process to the workload's start: the mount
	// namespace, the mounts and the workload's exec.
	Sandbox time.Duration
	// Startup is the time from Run's call to the workload's start.
	Startup time.Duration
}

// Run provisions the keys of m's encrypted mounts, builds the workload's view in a private
// mount namespace, where each trusted file is checked when first opened, and runs the workload
// there until it ends (see the package documentation). Relative host paths of m are relative to
// the current folder, to which the protected files of encrypted mounts are bound as Gramine
// binds them. In a confidential VM whose launcher gave it an MRCONFIGID or HOSTDATA, that must
// name m (attest/cvm) before any key is fetched.
//
// An error means the workload did not start, or that the sandbox process died under it; the
// workload's own failures are its exit status. Cancelling ctx kills the sandbox, and with it the
// workload.
func Run(ctx context.Context, m *manifest.Manifest, opts Options) (*Result, error) {
	begin := time.Now()
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := plan(m, opts.Args, log)
	if err != nil {
		return nil, err
	}
	if err := canRun(cfg); err != nil {
		return nil, err
	}
	cfg.CheckAhead = checkAhead(opts.CheckAhead, m, cfg.Trusted)
	res := &Result{}
	var keys map[string]pf.Key
	if names := KeyNames(m); len(names) > 0 {
		t := time.Now()
		// A VM launched for another workload stops here, before anything is fetched or mounted.
		if opts.Attester != nil {
			if err := cvm.CheckLaunch(opts.Attester, manifest.Measure(m)); err != nil {
				return nil, err
			}
			if err := measureRTMR3(opts.Attester, m, log); err != nil {
				return nil, err
			}
		}
		keys, err = fetchKeys(ctx, m, opts.Attester, names)
		if err != nil {
			return nil, err
		}
		defer wipe(keys)
		if err := openExisting(cfg, keys); err != nil {
			return nil, err
		}
		res.Keys = time.Since(t)
		log.Info("keys provisioned", "keys", names, "time", res.Keys)
		if err := setReady(opts.ConfidentialGPUs, log); err != nil {
			return nil, err
		}
	}
	// After the keys: a node that they are refused to never joins a mesh.
	netw, err := setupNetwork(ctx, m, opts, log)
	if err != nil {
		return nil, err
	}
	defer netw.close()
	cfg.NetNS = netw.file() != nil
	cfg.Env = append(cfg.Env, netw.env...)

	t := time.Now()
	res.ExitCode, res.Checked, err = runStage(ctx, cfg, keys, netw.file(), opts, func() {
		res.Sandbox = time.Since(t)
		res.Startup = time.Since(begin)
		log.Info("workload started", "sandbox", res.Sandbox, "startup", res.Startup)
	})
	if err != nil {
		return nil, err
	}
	log.Info("trusted files checked", "files", res.Checked.Files, "bytes", res.Checked.Bytes, "time", res.Checked.Time, "ahead", len(cfg.CheckAhead))
	if opts.CheckAhead != "" && len(res.Checked.Opened) > 0 {
		if err := writeOrder(opts.CheckAhead, m, res.Checked.Opened); err != nil {
			log.Warn("the order of the trusted files opened was not kept for the next run", "err", err)
		}
	}
	return res, nil
}

// canRun checks, before anything is attested or started, that this process can build the
// workload's view: it needs root, for the mount namespace, and /dev/fuse for the mounts it
// serves: the encrypted ones, and the plain ones, which hold the trusted files.
func canRun(cfg *stageConfig) error {
	if os.Geteuid() != 0 {
		return errors.New("ppml run needs root: it builds the workload's view in a mount namespace of its own (run it with sudo)")
	}
	if len(cfg.Volumes) > 0 || len(cfg.Trusted) > 0 || len(cfg.Absent) > 0 {
		if _, err := os.Stat("/dev/fuse"); err != nil {
			return fmt.Errorf("ppml run needs /dev/fuse to serve the encrypted mounts and the plain ones (load the fuse module: modprobe fuse; in a container, pass the device: --device /dev/fuse): %w", err)
		}
	}
	if cfg.Mesh {
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			return fmt.Errorf("ppml.network \"mesh\" needs /dev/net/tun for the mesh's interface (load the tun module: modprobe tun; in a container, pass the device: --device /dev/net/tun): %w", err)
		}
	}
	return nil
}

// openExisting checks that the existing file of every single-file encrypted mount opens with its
// key and is bound to its path, so that a wrong key, or a left-over output of another run, stops
// the start instead of failing the workload later.
func openExisting(cfg *stageConfig, keys map[string]pf.Key) error {
	for _, sm := range cfg.Mounts {
		if sm.Type != manifest.Encrypted || sm.Source == "" {
			continue
		}
		v := cfg.Volumes[sm.Volume]
		host := filepath.Join(v.Host, sm.Source)
		err := openProtected(host, keys[v.KeyName], pf.BoundPath(v.Prefix, sm.Source))
		var pathErr *fs.PathError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// an output, which the workload will write
		case errors.As(err, &pathErr):
			return fmt.Errorf("encrypted mount %s: %w", sm.Path, err)
		case err != nil:
			return fmt.Errorf("encrypted mount %s: %s does not open with key %q: %w (%s)", sm.Path, host, v.KeyName, err, openHint(err, v.KeyName, pf.BoundPath(v.Prefix, sm.Source)))
		}
	}
	return nil
}

// openHint says what to do about an existing file of an encrypted mount that does not open: only
// a file encrypted with another key can be an output left over from another run; a damaged file
// is never to be removed, as it may be the only copy of an input.
func openHint(err error, keyName, bound string) string {
	switch {
	case errors.Is(err, pf.ErrKey):
		return fmt.Sprintf("if it is an input, it was encrypted with another key than %q, or its metadata is damaged; if it is an output left over from a run with another key, move it away", keyName)
	case errors.Is(err, pf.ErrPath):
		return fmt.Sprintf("it was encrypted for another path: encrypt it for this mount with ppml pf encrypt --path %s", bound)
	case errors.Is(err, pf.ErrNotProtected), errors.Is(err, pf.ErrVersion):
		return "it is not a protected file ppml reads: encrypt it with ppml pf encrypt"
	default:
		return "the file is damaged or was tampered with: get it again from its owner"
	}
}

// openProtected opens the protected file host with key, checking that it is bound to bound.
func openProtected(host string, key pf.Key, bound string) error {
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	p, err := pf.Open(io.NewSectionReader(f, 0, info.Size()), info.Size(), key, &pf.Options{CheckPath: true, Path: bound})
	if err != nil {
		return err
	}
	return p.Close()
}

// report is a message of the sandbox process: one when the workload has started, then one
// when it has ended, or one saying why it could not start it.
type report struct {
	PID     int           `json:"pid,omitempty"`   // the workload started with this process ID
	Exit    *int          `json:"exit,omitempty"`  // the workload ended with this status
	Checked trustfs.Stats `json:"checked"`         // and its trusted files took this to check
	Error   string        `json:"error,omitempty"` // the sandbox could not start it
}

// Descriptors of the sandbox process: its configuration comes in on one pipe, and its reports
// go out on another; the workload's network namespace, when it has one of its own, follows.
const (
	configFD = 3
	reportFD = 4
	netnsFD  = 5
)

// runStage starts the sandbox process, sends it cfg and the keys and gives it netns, the
// workload's network namespace (nil for the host's), forwards signals to the workload and
// returns its exit status and what checking its trusted files took. started is called when
// the workload has started.
func runStage(ctx context.Context, cfg *stageConfig, keys map[string]pf.Key, netns *os.File, opts Options, started func()) (int, trustfs.Stats, error) {
	var none trustfs.Stats
	configR, configW, err := os.Pipe()
	if err != nil {
		return 0, none, err
	}
	defer configW.Close()
	reportR, reportW, err := os.Pipe()
	if err != nil {
		configR.Close()
		return 0, none, err
	}
	defer reportR.Close()

	// Not os.Executable's path: the file there may have been replaced since ppml started.
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{stageName}
	cmd.Env = []string{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	cmd.ExtraFiles = []*os.File{configR, reportW} // configFD, reportFD
	if netns != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, netns) // netnsFD
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second // for descendants of the workload that keep its output open
	// The parent-death signal comes when the thread that started the process ends: keep it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	configR.Close()
	reportW.Close()
	if err != nil {
		return 0, none, fmt.Errorf("start the sandbox process: %w", err)
	}
	sendErr := sendConfig(configW, cfg, keys)
	configW.Close()

	reports := make(chan report)
	go func() {
		defer close(reports)
		dec := json.NewDecoder(reportR)
		for {
			var r report
			if dec.Decode(&r) != nil {
				return
			}
			reports <- r
		}
	}()
	var (
		pid         int
		last        *report
		interrupted os.Signal
	)
	for reports != nil {
		select {
		case sig := <-opts.Signals:
			if pid == 0 {
				interrupted = sig
				cmd.Process.Kill()
			} else if s, ok := sig.(syscall.Signal); ok {
				syscall.Kill(-pid, s)
			}
		case r, ok := <-reports:
			switch {
			case !ok:
				reports = nil
			case r.PID != 0 && pid == 0:
				pid = r.PID
				started()
			default:
				last = &r
			}
		}
	}
	waitErr := cmd.Wait()
	switch {
	case last != nil && last.Error != "":
		return 0, none, errors.New(last.Error)
	case last != nil && last.Exit != nil:
		return *last.Exit, last.Checked, nil
	case interrupted != nil:
		return 0, none, fmt.Errorf("interrupted (%v) before the workload started", interrupted)
	case ctx.Err() != nil:
		return 0, none, ctx.Err()
	case sendErr != nil:
		return 0, none, fmt.Errorf("configure the sandbox process: %w (it ended: %v)", sendErr, waitErr)
	}
	return 0, none, fmt.Errorf("the sandbox process, which serves the workload's mounts, died (%v); the workload died with it", waitErr)
}

// sendConfig writes cfg to the sandbox process: its length, its gob encoding (quicker to decode
// than JSON for the hashes of thousands of trusted files), then the 16 bytes of each key in the
// order of cfg.KeyNames. The keys go straight from keys to the pipe, with no copy left behind in
// an encoder's buffers.
func sendConfig(w io.Writer, cfg *stageConfig, keys map[string]pf.Key) error {
	cfg.KeyNames = slices.Sorted(maps.Keys(keys))
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(cfg); err != nil {
		return err
	}
	b := buf.Bytes()
	if _, err := w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b)))); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	for _, name := range cfg.KeyNames {
		k := keys[name]
		_, err := w.Write(k[:])
		clear(k[:])
		if err != nil {
			return err
		}
	}
	return nil
}
