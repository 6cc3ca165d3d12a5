// Command ppml runs machine-learning workloads confidentially: it encrypts the owner's files in
// Gramine's protected-file format, attests workloads and provisions their keys, and runs them with
// a transparent encrypted filesystem. Run "ppml help" for the commands.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/internal/atomicfile"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors in how a command was called.
type usageError struct{ error }

// exitStatus is the error of a command that ends with an exit status of its own (ppml run: the
// workload's). run returns the status, without a message.
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit status. SIGINT and SIGTERM stop the
// command as it says (see stopping).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, interrupts := catchInterrupts(context.Background(), stderr)
	root := newRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	// Before any message: a signal that ended the command may end ppml instead.
	interrupts.close()
	if err == nil {
		return exitOK
	}
	var status exitStatus
	if errors.As(err, &status) {
		return status.code
	}
	var usage usageError
	if errors.As(err, &usage) {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "ppml: %v\n", err)
	return exitFailure
}

// abort ends ppml on signal sig: it removes the unfinished outputs, erases the progress bar,
// says why on stderr and exits with 128+N, N the signal's number.
func abort(stderr io.Writer, sig os.Signal, why string) {
	atomicfile.AbortAll()
	clearProgress()
	fmt.Fprintf(stderr, "ppml: %s\n", why)
	os.Exit(128 + int(sig.(syscall.Signal)))
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ppml",
		Short: "Run ML workloads confidentially, compatible with Gramine",
		Long: `ppml runs unmodified machine-learning workloads on machines their owner does not trust,
keeping the model, the data and the results confidential and tamper-evident.

The owner encrypts her files (ppml pf), the workload proves what it is by remote attestation,
receives the key and reads and writes its files through a transparent encrypted filesystem.
Files are Gramine protected files: they move freely between ppml and Gramine.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%s: %w (see %s --help)", cmd.CommandPath(), err, cmd.CommandPath())}
	})
	root.Version = version()
	root.SetVersionTemplate("ppml {{.Version}}\n")
	root.AddCommand(newVersionCommand(), newPFCommand(), newQuoteCommand(), newCollateralCommand(), newSimCommand(), newServeCommand(), newKeyCommand(), newAuditCommand(), newProvisionCommand(), newManifestCommand(), newRunCommand(), newGPUCommand())
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every group of commands (ppml, ppml pf, ...) fail with a usage
// error on a subcommand it lacks, suggesting the ones that are near, where cobra would print the
// group's help and succeed, and a script would carry on. A group given nothing prints its help.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	// The flags after a mistyped command are the command's, not the group's; the root keeps its
	// own (--help, --version).
	cmd.DisableFlagParsing = cmd.HasParent()
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
			return cmd.Help()
		}
		msg := fmt.Sprintf("%s: unknown command %q", cmd.CommandPath(), args[0])
		if near := cmd.SuggestionsFor(args[0]); len(near) > 0 {
			msg += fmt.Sprintf("; did you mean %s?", strings.Join(near, " or "))
		}
		return usageError{fmt.Errorf("%s (see %s --help)", msg, cmd.CommandPath())}
	}
}

// exactArgs is cobra.ExactArgs reporting a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}

// forceHint adds how to replace an existing output to atomicfile's error, whose wording does not
// know the command's flags. Commands with a --force flag report their outputs' errors through it.
func forceHint(err error) error {
	if errors.Is(err, atomicfile.ErrExists) {
		return fmt.Errorf("%w (use --force to replace it)", err)
	}
	return err
}

// hexFlag decodes the hex value of flag --name into dst: exactly len(dst) bytes, or up to
// len(dst) bytes, zero-padded, when padded is set.
func hexFlag(name, value string, dst []byte, padded bool) error {
	b, err := hex.DecodeString(value)
	if err != nil || len(b) > len(dst) || !padded && len(b) != len(dst) {
		return usageError{fmt.Errorf("--%s: want %d bytes in hex", name, len(dst))}
	}
	copy(dst, b)
	return nil
}

// requireFlags reports a usage error unless every named string flag was given.
func requireFlags(cmd *cobra.Command, names ...string) error {
	for _, name := range names {
		if !cmd.Flags().Changed(name) {
			return usageError{fmt.Errorf("%s: flag --%s is required", cmd.CommandPath(), name)}
		}
	}
	return nil
}
