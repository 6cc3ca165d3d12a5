// Command pytorch measures the PyTorch PPML tutorial's inference (examples/pytorch) natively and
// under ppml run on the simulated platform, in the same run, the two alternating:
//
//   - the wall time of the whole run: natively, /usr/bin/python3 pytorchexample.py on the
//     plaintext files; under ppml, ppml run pytorch.manifest, which adds ppml's own start,
//     attestation over RA-TLS and the key fetch from a provisioning server (ppml serve, on
//     loopback), the sandbox's mounts, the check of each trusted file that the workload opens,
//     and reading the model, image and classes through the encrypted filesystem;
//   - the steady-state inference time: steady.py runs the example, then times the forward pass
//     of its model on its input again after a warm-up and prints the median.
//
// It prints the medians and their ratios against the targets (wall under 1.3×, steady state
// under 1.05×), ppml's start-up as ppml run -v reports it, and checks that the confidential
// result.txt decrypts to what the native run writes. Run it from the repository's root, as root
// (ppml run needs mount namespaces and /dev/fuse):
//
//	go run ./bench/pytorch [-ppml bin/ppml] [-runs 10] [-dir /tmp] [-port 44336]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/sandbox"
)

// Targets from issue 6.
const (
	maxWallRatio   = 1.3
	maxSteadyRatio = 1.05
)

const python = "/usr/bin/python3"

func main() {
	ppml := flag.String("ppml", "bin/ppml", "the ppml binary to measure")
	runs := flag.Int("runs", 10, "runs of each measurement, natively and under ppml run")
	dir := flag.String("dir", "", "where to make the work folder (default: the temporary folder)")
	port := flag.Int("port", 44336, "the provisioning server's port on 127.0.0.1")
	flag.Parse()
	if err := run(*ppml, *runs, *dir, *port); err != nil {
		fmt.Fprintln(os.Stderr, "bench/pytorch:", err)
		os.Exit(1)
	}
}

// bench is the work folder: native/ holds the plaintext files, conf/ the confidential run's
// folder laid out as in the tutorial.
type bench struct {
	ppml         string
	native, conf string
	env          []string // the native runs' environment: the manifest's
}

func run(ppml string, runs int, dir string, port int) error {
	ppml, err := filepath.Abs(ppml)
	if err != nil {
		return err
	}
	example, err := filepath.Abs("examples/pytorch")
	if err != nil {
		return err
	}
	steady, err := filepath.Abs("bench/pytorch/steady.py")
	if err != nil {
		return err
	}
	if _, err := os.Stat(steady); err != nil {
		return fmt.Errorf("%w (run it from the repository's root)", err)
	}
	work, err := os.MkdirTemp(dir, "ppml-bench-pytorch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{ppml: ppml, native: filepath.Join(work, "native"), conf: filepath.Join(work, "conf")}
	stop, err := b.prepare(example, steady, port)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return err
	}

	torch, err := output(exec.Command(python, "-c", "import torch; print(torch.__version__)"))
	if err != nil {
		return err
	}
	fmt.Printf("machine: %d cores; torch %s; %d runs of each, native and ppml run alternating\n\n",
		runtime.NumCPU(), strings.TrimSpace(torch), runs)

	// One run of each first, not counted: the page cache, Python's bytecode cache.
	if _, err := b.nativeRun("pytorchexample.py"); err != nil {
		return err
	}
	if _, _, err := b.ppmlRun("pytorch.manifest"); err != nil {
		return err
	}

	var nativeWall, ppmlWall, nativeForward, ppmlForward []time.Duration
	var startups []startup
	var threads [2]int // PyTorch's threads, native and under ppml run
	for i := range runs {
		// Alternate which goes first, so that neither always finds the machine as the other left it.
		for _, native := range []bool{i%2 == 0, i%2 != 0} {
			if native {
				out, err := b.nativeRun("pytorchexample.py")
				if err != nil {
					return err
				}
				nativeWall = append(nativeWall, out.wall)
			} else {
				out, s, err := b.ppmlRun("pytorch.manifest")
				if err != nil {
					return err
				}
				ppmlWall = append(ppmlWall, out.wall)
				startups = append(startups, s)
			}
		}
	}
	if err := b.sameResult(); err != nil {
		return err
	}
	for i := range runs {
		for _, native := range []bool{i%2 == 0, i%2 != 0} {
			var out result
			var err error
			if native {
				out, err = b.nativeRun("steady.py")
			} else {
				out, _, err = b.ppmlRun("steady.manifest")
			}
			if err != nil {
				return err
			}
			d, n, err := forwardTime(out.stdout)
			if err != nil {
				return err
			}
			if native {
				nativeForward = append(nativeForward, d)
				threads[0] = n
			} else {
				ppmlForward = append(ppmlForward, d)
				threads[1] = n
			}
		}
	}

	wallRatio := median(ppmlWall).Seconds() / median(nativeWall).Seconds()
	steadyRatio := median(ppmlForward).Seconds() / median(nativeForward).Seconds()
	fmt.Printf("%-34s %14s %14s %8s\n", "", "native", "ppml run", "ratio")
	fmt.Printf("%-34s %14s %14s %7.3f×\n", "wall time of a run, median", ms(median(nativeWall)), ms(median(ppmlWall)), wallRatio)
	fmt.Printf("%-34s %14s %14s\n", "  min – max", ms(slices.Min(nativeWall))+" – "+ms(slices.Max(nativeWall)), ms(slices.Min(ppmlWall))+" – "+ms(slices.Max(ppmlWall)))
	fmt.Printf("%-34s %14s %14s %7.3f×\n", "forward pass, steady state, median", ms(median(nativeForward)), ms(median(ppmlForward)), steadyRatio)
	fmt.Printf("%-34s %14s %14s\n", "  min – max", ms(slices.Min(nativeForward))+" – "+ms(slices.Max(nativeForward)), ms(slices.Min(ppmlForward))+" – "+ms(slices.Max(ppmlForward)))
	fmt.Printf("\nppml run's start-up, median: %s, of which attestation and key fetch %s; trusted files checked while it ran %s (%s)\n",
		ms(medianOf(startups, func(s startup) time.Duration { return s.total })),
		ms(medianOf(startups, func(s startup) time.Duration { return s.keys })),
		ms(medianOf(startups, func(s startup) time.Duration { return s.trusted })), startups[0].trustedSize)
	fmt.Printf("PyTorch's threads: %d natively, %d under ppml run\n", threads[0], threads[1])
	fmt.Println("result.txt under ppml run decrypts to the native run's, byte for byte")
	fmt.Printf("\ntargets: wall ratio < %.2f: %s; steady-state ratio < %.2f: %s\n",
		maxWallRatio, verdict(wallRatio < maxWallRatio), maxSteadyRatio, verdict(steadyRatio < maxSteadyRatio))
	return nil
}

// prepare makes the model and input as the owner does, encrypts them, sets up a simulated
// platform, renders the two manifests (the example's and the steady-state probe's) and starts a
// provisioning server admitting both. stop stops the server.
func (b *bench) prepare(example, steady string, port int) (stop func(), err error) {
	for _, d := range []string{b.native, filepath.Join(b.conf, "files"), filepath.Join(b.conf, "ssl")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := output(exec.Command(python, filepath.Join(example, "make-model.py"), b.native)); err != nil {
		return nil, err
	}
	// The scripts go to both folders; the classes, like the model and the image, reach the
	// confidential folder only encrypted.
	for _, f := range []string{filepath.Join(example, "classes.txt"), filepath.Join(example, "pytorchexample.py"), steady} {
		for _, d := range []string{b.native, b.conf} {
			if d == b.conf && filepath.Base(f) == "classes.txt" {
				continue
			}
			if err := copyFile(f, filepath.Join(d, filepath.Base(f))); err != nil {
				return nil, err
			}
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	steps := [][]string{
		{"pf", "gen-key", "-w", "files/wrap_key"},
		{"sim", "init", "sim"},
		{"serve", "setup", "secret_prov", "--host", "localhost"},
	}
	for _, f := range []string{"input.jpg", "classes.txt", "alexnet-pretrained.pt"} {
		steps = append(steps, []string{"pf", "encrypt", "-w", "files/wrap_key", "-i", filepath.Join(b.native, f), "-o", f})
	}
	for _, args := range steps {
		if _, err := b.ppmlCmd(args...); err != nil {
			return nil, err
		}
	}
	if err := copyFile(filepath.Join(b.conf, "secret_prov", "ca.crt"), filepath.Join(b.conf, "ssl", "ca.crt")); err != nil {
		return nil, err
	}

	template, err := os.ReadFile(filepath.Join(example, "pytorch.manifest.template"))
	if err != nil {
		return nil, err
	}
	probe, err := steadyTemplate(string(template))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(b.conf, "steady.manifest.template"), []byte(probe), 0o644); err != nil {
		return nil, err
	}
	var measurements []string
	for name, tmpl := range map[string]string{"pytorch.manifest": filepath.Join(example, "pytorch.manifest.template"), "steady.manifest": "steady.manifest.template"} {
		if _, err := b.ppmlCmd("manifest", "render", tmpl, "-D", "entrypoint="+python, "-D", "arch_libdir=/lib/x86_64-linux-gnu",
			"-D", "server=localhost:"+strconv.Itoa(port), "-o", name); err != nil {
			return nil, err
		}
		mr, err := b.ppmlCmd("manifest", "measure", name)
		if err != nil {
			return nil, err
		}
		measurements = append(measurements, fmt.Sprintf("%q", strings.TrimSpace(mr)))
	}
	m, err := manifest.ParseFile(filepath.Join(b.conf, "pytorch.manifest"))
	if err != nil {
		return nil, err
	}
	b.env = sandbox.Environment(m) // the native run gets the workload's environment

	config := fmt.Sprintf(`listen = %q
tls_cert = "server.crt"
tls_key = "server.key"
store = "sqlite:ppml.db"
master_key_file = "master.key"
sim_platforms = ["../sim"]

[[workload]]
name = "pytorch"
tee = "sgx"
mrenclave = [%s]
accept_tcb = ["UpToDate"]
allow_simulated = true
keys = ["default"]
`, addr, strings.Join(measurements, ", "))
	if err := os.WriteFile(filepath.Join(b.conf, "secret_prov", "server.toml"), []byte(config), 0o600); err != nil {
		return nil, err
	}
	if _, err := b.ppmlCmd("key", "import", "default", "-w", "files/wrap_key", "--config", "secret_prov/server.toml"); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(b.conf, "secret_prov", "server.log"))
	if err != nil {
		return nil, err
	}
	server := exec.Command(b.ppml, "serve", "--config", "secret_prov/server.toml")
	server.Dir, server.Stderr = b.conf, log
	if err := server.Start(); err != nil {
		log.Close()
		return nil, err
	}
	stop = func() {
		server.Process.Kill()
		server.Wait()
		log.Close()
	}
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return stop, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return stop, fmt.Errorf("the provisioning server does not listen on %s (see its log)", addr)
}

// steadyTemplate makes the steady-state probe's manifest template from the example's: it runs
// steady.py, mounted and trusted beside pytorchexample.py.
func steadyTemplate(t string) (string, error) {
	for _, r := range [][2]string{
		{`"pytorchexample.py"]`, `"steady.py"]`},
		{`  { path = "/pytorchexample.py", uri = "file:pytorchexample.py" },`, `  { path = "/pytorchexample.py", uri = "file:pytorchexample.py" },` + "\n" + `  { path = "/steady.py", uri = "file:steady.py" },`},
		{`  "file:pytorchexample.py",`, `  "file:pytorchexample.py",` + "\n" + `  "file:steady.py",`},
	} {
		if strings.Count(t, r[0]) != 1 {
			return "", fmt.Errorf("examples/pytorch/pytorch.manifest.template has changed: the benchmark cannot add steady.py to it (%q)", r[0])
		}
		t = strings.Replace(t, r[0], r[1], 1)
	}
	return t, nil
}

// result is what one run took and printed.
type result struct {
	wall   time.Duration
	stdout string
}

// startup is ppml run's start-up as -v reports it.
type startup struct {
	total, keys, trusted time.Duration
	trustedSize          string
}

// nativeRun runs the script natively in the native folder.
func (b *bench) nativeRun(script string) (result, error) {
	cmd := exec.Command(python, script)
	cmd.Dir, cmd.Env = b.native, b.env
	return timed(cmd)
}

// ppmlRun runs the manifest under ppml run in the confidential folder.
func (b *bench) ppmlRun(name string) (result, startup, error) {
	cmd := exec.Command(b.ppml, "run", name, "--tee", "sim", "--sim-platform", "sim", "-v")
	cmd.Dir = b.conf
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	r, err := timed(cmd)
	if err != nil {
		return r, startup{}, fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	var s startup
	for _, f := range []struct {
		d  *time.Duration
		re string
	}{
		{&s.total, `msg="workload started".* startup=(\S+)`},
		{&s.keys, `msg="keys provisioned".* time=(\S+)`},
		{&s.trusted, `msg="trusted files checked".* time=(\S+)`},
	} {
		m := regexp.MustCompile(f.re).FindSubmatch(stderr.Bytes())
		if m == nil {
			return r, s, fmt.Errorf("ppml run -v did not report %s: %s", f.re, stderr.Bytes())
		}
		if *f.d, err = time.ParseDuration(string(m[1])); err != nil {
			return r, s, err
		}
	}
	if m := regexp.MustCompile(`msg="trusted files checked" files=(\d+) bytes=(\d+)`).FindSubmatch(stderr.Bytes()); m != nil {
		n, _ := strconv.ParseFloat(string(m[2]), 64)
		s.trustedSize = fmt.Sprintf("%s files, %.1f MB", m[1], n/1e6)
	}
	return r, s, nil
}

// sameResult checks that the confidential result.txt decrypts to the native one.
func (b *bench) sameResult() error {
	conf, err := b.ppmlCmd("pf", "decrypt", "-V", "-w", "files/wrap_key", "-i", "result.txt", "-o", "-")
	if err != nil {
		return err
	}
	native, err := os.ReadFile(filepath.Join(b.native, "result.txt"))
	if err != nil {
		return err
	}
	if conf != string(native) {
		return fmt.Errorf("result.txt differs: under ppml run\n%s\nnatively\n%s", conf, native)
	}
	return nil
}

// ppmlCmd runs ppml in the confidential folder and returns its standard output.
func (b *bench) ppmlCmd(args ...string) (string, error) {
	cmd := exec.Command(b.ppml, args...)
	cmd.Dir = b.conf
	return output(cmd)
}

func timed(cmd *exec.Cmd) (result, error) {
	start := time.Now()
	out, err := output(cmd)
	return result{time.Since(start), out}, err
}

// output runs cmd and returns its standard output; the error holds its standard error.
func output(cmd *exec.Cmd) (string, error) {
	var stderr bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, stderr.Bytes())
	}
	return string(out), nil
}

// forwardTime reads the "forward-ms MS threads N" line of steady.py: the median time of a
// forward pass, and PyTorch's number of threads.
func forwardTime(stdout string) (time.Duration, int, error) {
	m := regexp.MustCompile(`(?m)^forward-ms ([0-9.]+) threads (\d+)$`).FindStringSubmatch(stdout)
	if m == nil {
		return 0, 0, fmt.Errorf("steady.py printed no forward-ms line: %q", stdout)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	threads, _ := strconv.Atoi(m[2])
	return time.Duration(f * float64(time.Millisecond)), threads, err
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func medianOf(s []startup, f func(startup) time.Duration) time.Duration {
	var d []time.Duration
	for _, x := range s {
		d = append(d, f(x))
	}
	return median(d)
}

func ms(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.3f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d)/1e6)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
