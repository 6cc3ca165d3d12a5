// Command gramine measures the manifests in the shape of Gramine's examples (examples/gramine,
// issue 18) under ppml run against the same programs run natively, in the same run, the two
// alternating:
//
//   - python: Gramine's CI-Examples/python shape (28,000 trusted files here), the wall time of
//     "Hello World" (scripts/helloworld.py, in Gramine's root, the current folder), ppml run's
//     whole life against a native /usr/bin/python3.11 scripts/helloworld.py;
//   - pytorch: the Gramine examples repository's pytorch shape, which trusts all of /usr/lib
//     (82,000 trusted files, 5 GB here), the wall time of the inference (pytorchexample.py on
//     make-model.py's AlexNet) against a native run in the same folder;
//   - render: the time ppml manifest render takes to hash the pytorch manifest's trusted files.
//
// It renders each manifest with the -D values of Gramine's Makefiles, runs each side -runs
// times, and prints the medians and their ratio. ppml must be built (make build: bin/ppml) and
// run as root, from the repository's root:
//
//	go run ./bench/gramine [-runs 5] [-ppml bin/ppml]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

const python = "/usr/bin/python3.11"

var defines = []string{"-D", "arch_libdir=/lib/x86_64-linux-gnu", "-D", "log_level=error", "-D", "ra_type=none", "-D", "entrypoint=" + python}

func main() {
	runs := flag.Int("runs", 5, "runs of each side")
	bin := flag.String("ppml", "bin/ppml", "the ppml binary")
	flag.Parse()
	if err := run(*runs, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "gramine:", err)
		os.Exit(1)
	}
}

func run(runs int, bin string) error {
	ppml, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "ppml-bench-gramine-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	py := filepath.Join(work, "python")
	if err := os.CopyFS(py, os.DirFS(filepath.Join(repo, "examples/gramine/python"))); err != nil {
		return err
	}
	if _, err := timed(py, ppml, append([]string{"manifest", "render", "python.manifest.template", "-o", "python.manifest"}, defines...)...); err != nil {
		return err
	}
	if err := compare("python hello world", runs,
		func() (time.Duration, error) {
			return timed(py, ppml, "run", "python.manifest", "--tee", "sim", "--", "scripts/helloworld.py")
		},
		func() (time.Duration, error) { return timed(py, python, "scripts/helloworld.py") }); err != nil {
		return err
	}

	pt := filepath.Join(work, "pytorch")
	if err := os.CopyFS(pt, os.DirFS(filepath.Join(repo, "examples/gramine/pytorch"))); err != nil {
		return err
	}
	for _, name := range []string{"pytorchexample.py", "classes.txt"} {
		b, err := os.ReadFile(filepath.Join(repo, "examples/pytorch", name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(pt, name), b, 0o644); err != nil {
			return err
		}
	}
	if _, err := timed(pt, "/usr/bin/python3", filepath.Join(repo, "examples/pytorch/make-model.py"), "."); err != nil {
		return err
	}
	render, err := timed(pt, ppml, append([]string{"manifest", "render", "pytorch.manifest.template", "-o", "pytorch.manifest"}, defines...)...)
	if err != nil {
		return err
	}
	again, err := timed(pt, ppml, append([]string{"manifest", "render", "pytorch.manifest.template", "-o", "pytorch.manifest", "--force"}, defines...)...)
	if err != nil {
		return err
	}
	fmt.Printf("%-24s first %.2f s, again (files cached) %.2f s\n", "pytorch manifest render", render.Seconds(), again.Seconds())
	// result.txt, an allowed file, is made by each run of the workload, as in Gramine.
	return compare("pytorch inference", runs,
		func() (time.Duration, error) {
			return timed(pt, ppml, "run", "pytorch.manifest", "--tee", "sim", "--", "pytorchexample.py")
		},
		func() (time.Duration, error) {
			d, err := timed(pt, python, "pytorchexample.py")
			os.Remove(filepath.Join(pt, "result.txt")) // root's: each ppml run starts without it
			return d, err
		})
}

// compare runs ppml's side and the native side runs times each, alternating, and prints the
// medians and their ratio.
func compare(what string, runs int, ppml, native func() (time.Duration, error)) error {
	var p, n []time.Duration
	for range runs {
		d, err := ppml()
		if err != nil {
			return err
		}
		p = append(p, d)
		if d, err = native(); err != nil {
			return err
		}
		n = append(n, d)
	}
	mp, mn := median(p), median(n)
	fmt.Printf("%-24s ppml run %.3f s, native %.3f s, ratio %.2f× (medians of %d)\n", what, mp.Seconds(), mn.Seconds(), mp.Seconds()/mn.Seconds(), runs)
	return nil
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// timed runs name in dir and returns its wall time.
func timed(dir, name string, args ...string) (time.Duration, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s %v: %w\n%s", name, args, err, out.Bytes())
	}
	return time.Since(t), nil
}
