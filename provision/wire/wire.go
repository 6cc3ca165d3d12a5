// Package wire is the secret provisioning protocol that the server (package provision) and the
// client (package provision/client) share: Gramine's, byte for byte, and ppml's extension for
// several named keys and a reason when refused, and for joining a distributed job's mesh
// (mesh.go). Every reader bounds what it reads.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Gramine's secret provisioning protocol (gramine-compat.md §3.2): after the handshake the
// client sends gramineRequest; the server answers gramineResponse, the secret's length (u32,
// big-endian) and the secret, then closes.
const (
	gramineRequest  = "SECRET_PROVISION_RA_TLS_REQUEST_V1\x00"   // 35 bytes
	gramineResponse = "SECRET_PROVISION_RA_TLS_RESPONSE_V1:\x00" // 37 bytes
)

// ppml's extension, for several named keys in one connection and a reason when refused
// (docs/provisioning.md). The request starts with keysRequest, the same length as Gramine's
// request, then a count (u8, 1 to maxKeys) and each name (u8 length, 1 to maxName bytes). The
// response starts with keysResponse, then a status byte: granted, followed by each key in the
// order asked (u32 big-endian length, bytes); or refused, followed by the reason (u16 big-endian
// length, UTF-8).
const (
	keysRequest  = "PPML_PROVISION_KEYS_REQUEST_V1\x00\x00\x00\x00\x00"   // 35 bytes
	keysResponse = "PPML_PROVISION_KEYS_RESPONSE_V1:\x00\x00\x00\x00\x00" // 37 bytes

	statusGranted = 0
	statusRefused = 1

	maxKeys   = 32
	maxName   = 64
	maxReason = 1024
	maxSecret = 1 << 20
)

// Request is what a client asks for: Gramine's single secret, named keys, or to join a job's
// mesh.
type Request struct {
	Gramine bool
	Keys    []string
	Join    *Join
}

// ReadRequest reads a Gramine or ppml request.
func ReadRequest(r io.Reader) (*Request, error) {
	magic := make([]byte, len(gramineRequest))
	if _, err := io.ReadFull(r, magic); err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	switch string(magic) {
	case gramineRequest:
		return &Request{Gramine: true}, nil
	case keysRequest:
	case joinRequest:
		j, err := readJoin(r)
		if err != nil {
			return nil, err
		}
		return &Request{Join: j}, nil
	default:
		return nil, fmt.Errorf("not a provisioning request (it starts %q)", magic)
	}
	var count [1]byte
	if _, err := io.ReadFull(r, count[:]); err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if count[0] == 0 || count[0] > maxKeys {
		return nil, fmt.Errorf("request for %d keys (1 to %d)", count[0], maxKeys)
	}
	req := &Request{}
	for range count[0] {
		name, err := readShort(r, 1, maxName)
		if err != nil {
			return nil, fmt.Errorf("read key name: %w", err)
		}
		req.Keys = append(req.Keys, string(name))
	}
	return req, nil
}

// readShort reads a u8-length-prefixed field of min to max bytes.
func readShort(r io.Reader, min, max int) ([]byte, error) {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	if int(n[0]) < min || int(n[0]) > max {
		return nil, fmt.Errorf("length %d out of range %d to %d", n[0], min, max)
	}
	b := make([]byte, n[0])
	_, err := io.ReadFull(r, b)
	return b, err
}

// Marshal returns the request as a client sends it.
func (req *Request) Marshal() ([]byte, error) {
	if req.Gramine {
		return []byte(gramineRequest), nil
	}
	if req.Join != nil {
		return marshalJoin(req.Join)
	}
	if len(req.Keys) == 0 || len(req.Keys) > maxKeys {
		return nil, fmt.Errorf("ask for 1 to %d keys, not %d", maxKeys, len(req.Keys))
	}
	b := append([]byte(keysRequest), byte(len(req.Keys)))
	for _, k := range req.Keys {
		if len(k) == 0 || len(k) > maxName {
			return nil, fmt.Errorf("key name %q: 1 to %d bytes", k, maxName)
		}
		b = append(append(b, byte(len(k))), k...)
	}
	return b, nil
}

// Grant returns the response that releases secrets, answering req.
func Grant(req *Request, secrets [][]byte) []byte {
	if req.Gramine {
		b := binary.BigEndian.AppendUint32([]byte(gramineResponse), uint32(len(secrets[0])))
		return append(b, secrets[0]...)
	}
	b := append([]byte(keysResponse), statusGranted)
	for _, s := range secrets {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// Refusal returns the response that refuses req for reason, or nil for a Gramine client, which
// learns nothing but a closed connection (as from Gramine's own server).
func Refusal(req *Request, reason string) []byte {
	if req.Gramine {
		return nil
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	magic := keysResponse
	if req.Join != nil {
		magic = joinResponse
	}
	b := append([]byte(magic), statusRefused)
	b = binary.BigEndian.AppendUint16(b, uint16(len(reason)))
	return append(b, reason...)
}

// ErrRefused is returned by a client whose request the server refused; the error says why.
var ErrRefused = errors.New("the server refused")

// ReadResponse reads the answer to req: the secrets, in the order asked.
func ReadResponse(r io.Reader, req *Request) ([][]byte, error) {
	if req.Gramine {
		head := make([]byte, len(gramineResponse)+4)
		if _, err := io.ReadFull(r, head); err != nil {
			return nil, fmt.Errorf("read response: %w (a Gramine-protocol server closes the connection when it refuses)", err)
		}
		if string(head[:len(gramineResponse)]) != gramineResponse {
			return nil, errors.New("not a provisioning response")
		}
		s, err := readSecret(r, binary.BigEndian.Uint32(head[len(gramineResponse):]))
		return [][]byte{s}, err
	}
	if err := readStatus(r, keysResponse); err != nil {
		return nil, err
	}
	var secrets [][]byte
	for range req.Keys {
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		s, err := readSecret(r, binary.BigEndian.Uint32(n[:]))
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, s)
	}
	return secrets, nil
}

func readSecret(r io.Reader, n uint32) ([]byte, error) {
	if n > maxSecret || n > math.MaxInt32 {
		return nil, fmt.Errorf("secret of %d bytes is too large", n)
	}
	s := make([]byte, n)
	if _, err := io.ReadFull(r, s); err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	return s, nil
}
