package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/ppml/ppml/internal/atomicfile"
	"github.com/ppml/ppml/pf"
	"github.com/ppml/ppml/pf/rekey"
)

func newPFCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pf",
		Short: "Make keys for, encrypt, decrypt and inspect Gramine protected files",
		Long: `The pf commands convert files to and from Gramine protected files, the format of Gramine's
encrypted mounts. They take the flags of gramine-sgx-pf-crypt, so that its scripts work after
a rename, and differ in being safe: outputs appear only when complete, and an existing output
is replaced only with --force.

A protected file is bound to a path: Gramine opens it only under that exact path (relative to
the folder where gramine-sgx runs, normalized). encrypt binds the normalized -o path, or --path.`,
	}
	cmd.AddCommand(newGenKeyCommand(), newEncryptCommand(), newDecryptCommand(), newRekeyCommand(), newInspectCommand())
	return cmd
}

func newGenKeyCommand() *cobra.Command {
	var keyPath string
	var force bool
	cmd := &cobra.Command{
		Use:   "gen-key -w KEY",
		Short: "Write a new random 16-byte wrap key",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "wrap-key"); err != nil {
				return err
			}
			var key pf.Key
			rand.Read(key[:])
			defer clear(key[:])
			if err := atomicfile.WriteFile(keyPath, key[:], 0o600, force); err != nil {
				return forceHint(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrap key saved to %s\n", keyPath)
			return nil
		},
	}
	cmd.Flags().StringVarP(&keyPath, "wrap-key", "w", "", "where to write the key (16 raw bytes)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing key file")
	return cmd
}

// conversion is what encrypt and decrypt share: a key, an input, an output, and how to convert
// one file.
type conversion struct {
	keyPath, in, out string
	force, verbose   bool
	key              pf.Key
}

func (c *conversion) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&c.keyPath, "wrap-key", "w", "", "the 16-byte wrap key file")
	f.StringVarP(&c.in, "input", "i", "", "input file or folder")
	f.StringVarP(&c.out, "output", "o", "", "output file or folder")
	f.BoolVar(&c.force, "force", false, "replace an existing output")
	f.BoolVarP(&c.verbose, "verbose", "v", false, "name every file converted")
}

// run checks the flags, then converts the input file, or every regular file under the input
// folder, with convert(in, out, rel), rel being the file's slash-separated path below -i ("" for
// a single file). The output appears only if every file converted.
func (c *conversion) run(cmd *cobra.Command, convert func(in, out, rel string) error) error {
	if err := requireFlags(cmd, "wrap-key", "input", "output"); err != nil {
		return err
	}
	key, err := readKey(c.keyPath)
	if err != nil {
		return err
	}
	c.key = key
	info, err := os.Stat(c.in)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	if info.IsDir() && inside(c.out, c.in) {
		return usageError{fmt.Errorf("%s: -o %s is inside the input folder %s: write the output outside it", cmd.CommandPath(), c.out, c.in)}
	}
	out, err := atomicfile.New(c.out, info.IsDir(), c.force)
	if err != nil {
		return forceHint(err)
	}
	if err := c.convertAll(cmd, info.IsDir(), out.Temp, convert); err != nil {
		out.Abort()
		return err
	}
	return forceHint(out.Commit())
}

// inside reports whether the path p, which may not exist yet, lies below the folder dir.
func inside(p, dir string) bool {
	abs := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		p, _ = filepath.Abs(p)
		return p
	}
	p = filepath.Clean(p)
	rel, err := filepath.Rel(abs(dir), filepath.Join(abs(filepath.Dir(p)), filepath.Base(p)))
	return err == nil && rel != "." && filepath.IsLocal(rel)
}

// filesAsFlags is the Args of encrypt and decrypt, which name their files with flags, as
// gramine-sgx-pf-crypt does.
func filesAsFlags(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s: name the input with -i and the output with -o, not as arguments: %s %s", cmd.CommandPath(), cmd.Parent().CommandPath(), cmd.Use)}
	}
	return nil
}

func (c *conversion) convertAll(cmd *cobra.Command, dir bool, temp string, convert func(in, out, rel string) error) error {
	if !dir {
		return c.convertOne(cmd, c.in, temp, "", convert)
	}
	return filepath.WalkDir(c.in, func(in string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.in, in)
		out := filepath.Join(temp, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o775)
		case d.Type().IsRegular():
			return c.convertOne(cmd, in, out, filepath.ToSlash(rel), convert)
		default:
			if c.verbose {
				fmt.Fprintf(cmd.ErrOrStderr(), "skipping %s: not a regular file\n", in)
			}
			return nil
		}
	})
}

func (c *conversion) convertOne(cmd *cobra.Command, in, out, rel string, convert func(in, out, rel string) error) error {
	if err := convert(in, out, rel); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if c.verbose {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s -> %s\n", in, path.Join(filepath.ToSlash(c.out), rel))
	}
	return nil
}

func readKey(name string) (pf.Key, error) {
	var key pf.Key
	b, err := os.ReadFile(name)
	if err != nil {
		return key, fmt.Errorf("wrap key: %w", err)
	}
	if len(b) != pf.KeySize {
		return key, fmt.Errorf("wrap key %s is %d bytes; a wrap key is exactly 16 raw bytes (make one with ppml pf gen-key)", name, len(b))
	}
	copy(key[:], b)
	clear(b)
	return key, nil
}

func newEncryptCommand() *cobra.Command {
	var c conversion
	var bound string
	var format int
	cmd := &cobra.Command{
		Use:   "encrypt -w KEY -i IN -o OUT [--format 1]",
		Short: "Encrypt a file or folder into protected files",
		Long: `encrypt writes the protected file OUT for the plaintext file IN, or, when IN is a folder,
one protected file under OUT for every regular file under IN.

Each file is bound to its normalized output path (OUT, or OUT/NAME in a folder), which must be
the path under which Gramine will open it; --path binds PATH (or PATH/NAME) instead.

Files are written in format 2, which Gramine reads since v1.9. --format 1 writes the format of
Gramine v1.0 to v1.8, which v1.9 reads too (and rewrites as format 2 when it changes a file).`,
		Args: filesAsFlags,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(cmd, format); err != nil {
				return err
			}
			prefix := c.out
			if cmd.Flags().Changed("path") {
				prefix = bound
			}
			opts := &pf.Options{Version: uint8(format)}
			return c.run(cmd, func(in, out, rel string) error {
				return encryptFile(cmd, in, out, pf.BoundPath(filepath.ToSlash(prefix), rel), c.key, opts)
			})
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&bound, "path", "", "bind this path instead of the output path")
	cmd.Flags().IntVar(&format, "format", pf.Version, "protected-file format: 2 for Gramine v1.9 and later, 1 for v1.0 to v1.8")
	return cmd
}

// checkFormat checks the value of --format.
func checkFormat(cmd *cobra.Command, format int) error {
	if format != 1 && format != 2 {
		return usageError{fmt.Errorf("%s: --format %d: want 1 (Gramine v1.0 to v1.8) or 2 (Gramine v1.9 and later)", cmd.CommandPath(), format)}
	}
	return nil
}

func encryptFile(cmd *cobra.Command, in, out, bound string, key pf.Key, opts *pf.Options) error {
	return convertFile(cmd, in, out, os.O_RDWR, 0o644, "encrypting", func(dst, src *os.File, _ int64, bar io.Writer) error {
		_, err := pf.Encrypt(dst, io.TeeReader(src, bar), key, bound, opts)
		return err
	})
}

// convertFile opens in, creates out (opened with flag, with mode) and runs convert on them with
// the size of in and a progress bar, shown on a terminal for big inputs, to count bytes on.
func convertFile(cmd *cobra.Command, in, out string, flag int, mode os.FileMode, verb string, convert func(dst, src *os.File, size int64, bar io.Writer) error) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return err
	}
	dst, err := os.OpenFile(out, flag|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	defer dst.Close()
	bar, finish := newProgress(cmd.ErrOrStderr(), info.Size(), verb+" "+in)
	defer finish()
	if err := convert(dst, src, info.Size(), bar); err != nil {
		return err
	}
	if err := dst.Chmod(mode); err != nil {
		return err
	}
	return dst.Close()
}

func newDecryptCommand() *cobra.Command {
	var c conversion
	var verify bool
	cmd := &cobra.Command{
		Use:   "decrypt -w KEY -i IN -o OUT [-V]",
		Short: "Decrypt a protected file or a folder of them",
		Long: `decrypt writes the plaintext of the protected file IN to OUT, or, when IN is a folder, of every
file under IN to the same place under OUT. Every node is checked: a damaged file or a wrong key
is an error, and then no output is written.

With -V the path bound into each file must equal its normalized input path, as Gramine checks.
With -o - the plaintext of one file goes to standard output as it is checked; a failure midway
has then written part of it, and the exit status says so.`,
		Args: filesAsFlags,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pathOf := func(rel string) *pf.Options {
				return &pf.Options{CheckPath: verify, Path: pf.BoundPath(filepath.ToSlash(c.in), rel)}
			}
			if c.out == "-" {
				return c.toStdout(cmd, pathOf(""))
			}
			return c.run(cmd, func(in, out, rel string) error {
				return decryptFile(cmd, in, out, c.key, pathOf(rel))
			})
		},
	}
	c.flags(cmd)
	cmd.Flags().BoolVarP(&verify, "verify", "V", false, "require the bound path to equal the input path")
	return cmd
}

// toStdout decrypts the one input file to standard output.
func (c *conversion) toStdout(cmd *cobra.Command, opts *pf.Options) error {
	if err := requireFlags(cmd, "wrap-key", "input"); err != nil {
		return err
	}
	key, err := readKey(c.keyPath)
	if err != nil {
		return err
	}
	defer clear(key[:])
	src, err := os.Open(c.in)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return err
	}
	if _, err := pf.Decrypt(cmd.OutOrStdout(), src, info.Size(), key, opts); err != nil {
		return fmt.Errorf("%s: %w", c.in, err)
	}
	return nil
}

func decryptFile(cmd *cobra.Command, in, out string, key pf.Key, opts *pf.Options) error {
	return convertFile(cmd, in, out, os.O_WRONLY, 0o600, "decrypting", func(dst, src *os.File, size int64, bar io.Writer) error {
		_, err := pf.Decrypt(io.MultiWriter(dst, bar), src, size, key, opts)
		if errors.Is(err, pf.ErrKey) {
			err = fmt.Errorf("%w (is -w the key it was encrypted with?)", err)
		}
		return err
	})
}

func newRekeyCommand() *cobra.Command {
	var oldPath, newPath, in string
	var format int
	var verbose bool
	cmd := &cobra.Command{
		Use:   "rekey -w OLD -W NEW -i PATH [--format 1|2]",
		Short: "Re-encrypt a protected file, or a folder of them, in place under a new key",
		Long: `rekey re-encrypts the protected file PATH, or every file under the folder PATH, from the wrap
key OLD to the wrap key NEW, in place: after ppml key rotate, it moves the files to the new
current version of the key. Each file keeps its bound path, and its format unless --format says
otherwise.

First every file's metadata is opened: if one opens with neither key, or is no protected file,
rekey names it and changes nothing. Files under NEW already are skipped. Each file is then
replaced atomically and durably, several at once, large ones one at a time on every core: a
rekey stopped at any moment (Ctrl-C, a crash, a power cut) leaves every file whole under OLD or
NEW, and run again it finishes. It removes the temporary files that a stopped run left.`,
		Args: filesAsFlags,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "wrap-key", "new-wrap-key", "input"); err != nil {
				return err
			}
			opts := &rekey.Options{}
			if cmd.Flags().Changed("format") {
				if err := checkFormat(cmd, format); err != nil {
					return err
				}
				opts.Version = uint8(format)
			}
			oldKey, err := readKey(oldPath)
			if err != nil {
				return err
			}
			defer clear(oldKey[:])
			newKey, err := readKey(newPath)
			if err != nil {
				return fmt.Errorf("-W: %w", err)
			}
			defer clear(newKey[:])
			if oldKey == newKey {
				return usageError{fmt.Errorf("%s: -w %s and -W %s hold the same key", cmd.CommandPath(), oldPath, newPath)}
			}
			stderr := cmd.ErrOrStderr()
			if verbose {
				opts.Done = func(name string, rekeyed bool) {
					if rekeyed {
						fmt.Fprintf(stderr, "rekeyed %s\n", name)
					} else {
						fmt.Fprintf(stderr, "skipped %s: under the new key already\n", name)
					}
				}
			}
			// Ctrl-C lets the files in progress finish; a second one stops at once.
			defer stopBy(cmd.Context(), stopOnContext)()
			res, err := rekey.Run(cmd.Context(), in, oldKey, newKey, opts)
			if res != nil {
				for _, name := range res.Removed {
					fmt.Fprintf(stderr, "removed %s, left by an interrupted run\n", name)
				}
				if verbose {
					for _, name := range res.Ignored {
						fmt.Fprintf(stderr, "skipping %s: not a regular file\n", name)
					}
				}
			}
			if errors.Is(err, rekey.ErrNeitherKey) {
				return fmt.Errorf("%w (is -w the key the files are under, and -W the new one?)", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "rekeyed %d files (%s of plaintext); %d under the new key already\n", res.Rekeyed, humanize.IBytes(uint64(res.Bytes)), res.Skipped)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&oldPath, "wrap-key", "w", "", "the wrap key the files are under now (OLD)")
	f.StringVarP(&newPath, "new-wrap-key", "W", "", "the wrap key to re-encrypt them under (NEW)")
	f.StringVarP(&in, "input", "i", "", "the protected file or folder, changed in place")
	f.IntVar(&format, "format", 0, "write format 1 (Gramine v1.0 to v1.8) or 2 (v1.9 and later) instead of each file's own")
	f.BoolVarP(&verbose, "verbose", "v", false, "name every file rekeyed or skipped")
	return cmd
}

func newInspectCommand() *cobra.Command {
	var keyPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE... [-w KEY]",
		Short: "Show what a protected file's header tells (with -w, also its path and size)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("%s: name at least one file", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var key *pf.Key
			if keyPath != "" {
				k, err := readKey(keyPath)
				if err != nil {
					return err
				}
				key = &k
			}
			for _, name := range args {
				report, err := inspectFile(name, key)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				if asJSON {
					b, _ := json.Marshal(report)
					fmt.Fprintln(cmd.OutOrStdout(), string(b))
				} else {
					report.print(cmd.OutOrStdout())
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&keyPath, "wrap-key", "w", "", "the wrap key, to show the bound path and exact size")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per file")
	return cmd
}

// inspection is what inspect reports about one file.
type inspection struct {
	File     string  `json:"file"`
	Version  string  `json:"version"`
	Flags    uint8   `json:"flags"`
	Nonce    string  `json:"nonce"`
	MAC      string  `json:"metadata_mac"`
	HostSize int64   `json:"host_size"`
	MinSize  int64   `json:"min_size"`
	MaxSize  int64   `json:"max_size"`
	Path     *string `json:"path,omitempty"`
	Size     *int64  `json:"size,omitempty"`
	major    uint8   // the format's major version, which says what print shows
}

func inspectFile(name string, key *pf.Key) (*inspection, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	info, err := pf.Inspect(f, st.Size())
	if err != nil {
		return nil, err
	}
	r := &inspection{
		File: name, Version: fmt.Sprintf("%d.%d", info.Major, info.Minor), major: info.Major, Flags: info.Flags,
		Nonce: hex.EncodeToString(info.Nonce[:]), MAC: hex.EncodeToString(info.MAC[:]),
		HostSize: info.HostSize, MinSize: info.MinSize, MaxSize: info.MaxSize,
	}
	if key != nil {
		file, err := pf.Open(f, st.Size(), *key, nil)
		if err != nil {
			return nil, err
		}
		p, size := file.Path(), file.Size()
		r.Path, r.Size = &p, &size
		file.Close()
	}
	return r, nil
}

func (r *inspection) print(w io.Writer) {
	readers := "Gramine v1.9 and later"
	if r.major == 1 {
		readers = "Gramine v1.0 and later"
	}
	fmt.Fprintf(w, "%s: Gramine protected file, format version %s (read by %s)\n", r.File, r.Version, readers)
	fmt.Fprintf(w, "  host size:      %d bytes\n", r.HostSize)
	if r.Size != nil {
		fmt.Fprintf(w, "  plaintext size: %d bytes\n", *r.Size)
		fmt.Fprintf(w, "  bound path:     %q\n", *r.Path)
	} else {
		fmt.Fprintf(w, "  plaintext size: %d to %d bytes (exact size and path need the key)\n", r.MinSize, r.MaxSize)
	}
	if r.major == 1 {
		fmt.Fprintf(w, "  feature flags:  none in format 1\n")
	} else {
		fmt.Fprintf(w, "  feature flags:  %#02x\n", r.Flags)
	}
	fmt.Fprintf(w, "  KDF nonce:      %s\n", r.Nonce)
	fmt.Fprintf(w, "  metadata MAC:   %s\n", r.MAC)
}
