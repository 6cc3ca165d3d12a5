package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest/nvidia"
)

func newGPUCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "Verify the attestation evidence of NVIDIA confidential-computing GPUs",
	}
	cmd.AddCommand(newGPUVerifyCommand())
	return cmd
}

// gpuView is what gpu verify reports of a GPU.
type gpuView struct {
	Arch              string       `json:"arch"`
	DriverVersion     string       `json:"driver_version"`
	VBIOSVersion      string       `json:"vbios_version"`
	Nonce             string       `json:"nonce"`
	FWID              string       `json:"fwid"`
	Revocation        string       `json:"revocation"`
	Measurements      string       `json:"measurements"`
	MismatchedIndices []int        `json:"mismatched_indices"`
	RIMs              []gpuRIMView `json:"rims"`
}

type gpuRIMView struct {
	ID        string `json:"id"`
	Version   string `json:"version"`
	Component string `json:"component,omitempty"`
	Valid     bool   `json:"valid"`
}

func newGPUVerifyCommand() *cobra.Command {
	var chainFile, nonceHex, ocspDir, at string
	var rimFiles []string
	var requireRIMs, allowHold, asJSON bool
	cmd := &cobra.Command{
		Use:   "verify EVIDENCE --cert-chain PEM --nonce HEX [--rim FILE]... [--ocsp DIR] [--at TIME] [--require-rims] [--json]",
		Short: "Verify an NVIDIA GPU's SPDM attestation evidence",
		Long: `verify checks the evidence of an NVIDIA Hopper or Blackwell GPU in confidential-computing mode:
the SPDM GET_MEASUREMENTS request and the GPU's signed response, as raw bytes or as hex text
(what nvtrust writes). It exits 0 only when the device certificate chain (--cert-chain, PEM, leaf
first) leads to NVIDIA's Device Identity CA, the leaf's FWID is the evidence's, the signature
verifies with the leaf's key and the request carries --nonce; and, when RIMs are given (--rim,
the driver's and the VBIOS's SWID tags as NVIDIA's RIM service serves them), they are signed up
to NVIDIA's CoRIM signing Root CA, valid at --at, for the versions the GPU runs, and every active
index matches. Without RIMs the measurements are "unavailable" and it exits 0 unless
--require-rims. --ocsp DIR checks revocation of the device and RIM chains with the recorded OCSP
responses there (see docs/gpu.md); without it revocation is not checked.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if chainFile == "" || nonceHex == "" {
				return usageError{errors.New("gpu verify needs --cert-chain PEM and --nonce HEX")}
			}
			nonce, err := nvidia.HexNonce(nonceHex)
			if err != nil {
				return usageError{fmt.Errorf("--nonce: %w", err)}
			}
			when := time.Now()
			if at != "" {
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return usageError{fmt.Errorf("--at: %w", err)}
				}
			}
			raw, err := readLimited(args[0], 1<<20)
			if err != nil {
				return err
			}
			evidence, err := nvidia.DecodeEvidence(raw)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			chain, err := readLimited(chainFile, 1<<20)
			if err != nil {
				return err
			}
			opts := nvidia.Options{Time: when, Nonce: nonce, RequireRIMs: requireRIMs, AllowHold: allowHold}
			for _, f := range rimFiles {
				b, err := readLimited(f, nvidia.MaxRIMSize)
				if err != nil {
					return err
				}
				opts.RIMs = append(opts.RIMs, b)
			}
			if ocspDir != "" {
				if _, err := os.Stat(ocspDir); err != nil {
					return fmt.Errorf("--ocsp: %w", err)
				}
				opts.OCSP = nvidia.OCSPDir(ocspDir)
			}
			v, verr := nvidia.Verify(evidence, chain, opts)
			if v != nil {
				printGPU(cmd.OutOrStdout(), v, asJSON)
			}
			if verr != nil {
				return fmt.Errorf("%s does not verify: %w", args[0], verr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&chainFile, "cert-chain", "", "the GPU's device certificate chain (PEM, leaf first)")
	f.StringVar(&nonceHex, "nonce", "", "the 32-byte nonce the evidence must answer, in hex")
	f.StringArrayVar(&rimFiles, "rim", nil, "a driver or VBIOS RIM (SWID XML); repeat for both")
	f.StringVar(&ocspDir, "ocsp", "", "folder of recorded OCSP responses (default: revocation not checked)")
	f.StringVar(&at, "at", "", "verify as of this time (RFC 3339; default now)")
	f.BoolVar(&requireRIMs, "require-rims", false, "fail unless both the driver and the VBIOS RIM are given")
	f.BoolVar(&allowHold, "allow-hold", false, "accept certificates that OCSP reports on hold")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// readLimited reads a file of at most limit bytes.
func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: is it the right file?", name, limit)
	}
	return b, nil
}

func printGPU(w io.Writer, v *nvidia.Verdict, asJSON bool) {
	op := &v.Evidence.Response.Opaque
	view := gpuView{
		Arch: v.Arch, DriverVersion: op.DriverVersion(), VBIOSVersion: op.VBIOSVersion(),
		Nonce: hex.EncodeToString(v.Evidence.Request.Nonce[:]), FWID: hex.EncodeToString(v.FWID),
		Revocation: v.Revocation, Measurements: v.Measurements, MismatchedIndices: v.Mismatched,
		RIMs: []gpuRIMView{},
	}
	if view.MismatchedIndices == nil {
		view.MismatchedIndices = []int{}
	}
	for _, r := range v.RIMs {
		view.RIMs = append(view.RIMs, gpuRIMView{ID: r.ID, Version: r.Version, Component: r.Component, Valid: r.Valid})
	}
	if asJSON {
		b, _ := json.Marshal(view)
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "arch            %s\ndriver_version  %s\nvbios_version   %s\nnonce           %s\nfwid            %s\nrevocation      %s\nmeasurements    %s\n",
		view.Arch, view.DriverVersion, view.VBIOSVersion, view.Nonce, view.FWID, view.Revocation, view.Measurements)
	if len(view.MismatchedIndices) > 0 {
		fmt.Fprintf(w, "mismatched      %v\n", view.MismatchedIndices)
	}
	for _, r := range view.RIMs {
		fmt.Fprintf(w, "rim             %s %s %s valid=%t\n", r.ID, r.Version, r.Component, r.Valid)
	}
}
