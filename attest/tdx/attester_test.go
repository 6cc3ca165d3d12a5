package tdx

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
)

// fakeTSM is go-configfs-tsm's fake configfs-tsm whose provider reads provider and whose outblob
// is TDX-1's quote: it only answers the report data that quote binds, like a TD that has taken
// one quote.
func fakeTSM(t *testing.T, provider string) configfsi.Client {
	quote := read(t, "tdx/oasis-core/quote_v4_tdx_ecdsa_p256.bin")
	q, err := sgx.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	sub := faketsm.Report611(0)
	sub.ReadAttr = func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
		switch attr {
		case "provider":
			return []byte(provider + "\n"), nil
		case "outblob":
			if !bytes.Equal(e.InAttrs["inblob"].Value, q.TD.ReportData[:]) {
				return nil, errors.New("no quote for this report data")
			}
			return quote, nil
		}
		return nil, errors.New("unexpected attribute " + attr)
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func TestAttester(t *testing.T) {
	quote, at, v := setVerifier(t, "TDX-1")
	q, err := sgx.ParseQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	rd := attest.ReportData(q.TD.ReportData)

	var a attest.Attester = NewAttester(fakeTSM(t, "tdx_guest"))
	if a.Kind() != attest.TDX {
		t.Fatalf("kind %q", a.Kind())
	}
	evidence, err := a.Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), evidence, at)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.ReportData, rd[:]) {
		t.Fatalf("report data %s, want %x", c.ReportData, rd)
	}

	_, err = a.Attest(attest.ReportData{1})
	wantErr(t, err, nil, "configfs-tsm report")

	_, err = NewAttester(fakeTSM(t, "sev_guest")).Attest(rd)
	wantErr(t, err, nil, `reports come from "sev_guest", not "tdx_guest"`)
}

func TestOpenAttester(t *testing.T) {
	// Where the machine has no configfs-tsm, the error says so.
	if _, err := OpenAttester(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}
