package sandbox

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/pf"
	"github.com/ppml/ppml/provision/client"
)

// KeyNames returns the distinct key names of m's encrypted mounts, in the order of first use.
// A manifest without any needs no attestation.
func KeyNames(m *manifest.Manifest) []string {
	var names []string
	for _, mt := range m.Mounts {
		if mt.Type == manifest.Encrypted && !slices.Contains(names, mt.KeyName) {
			names = append(names, mt.KeyName)
		}
	}
	return names
}

// fetchKeys attests with a, m's measurement in the report data (attest.ForWorkload), and fetches
// the named keys from m's provisioning servers.
func fetchKeys(ctx context.Context, m *manifest.Manifest, a attest.Attester, names []string) (map[string]pf.Key, error) {
	if a == nil {
		return nil, errors.New("the encrypted mounts' keys need remote attestation, and no TEE was chosen to attest with")
	}
	c, err := newClient(m, a)
	if err != nil {
		return nil, err
	}
	secrets, err := c.Fetch(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("keys %s from %s: %w", strings.Join(names, ", "), strings.Join(c.Servers, ", "), err)
	}
	keys := make(map[string]pf.Key, len(names))
	for i, s := range secrets {
		if len(s) != pf.KeySize && err == nil {
			err = fmt.Errorf("key %q from the provisioning server is %d bytes, not %d", names[i], len(s), pf.KeySize)
		}
		if err == nil {
			keys[names[i]] = pf.Key(s)
		}
		clear(s)
	}
	if err != nil {
		wipe(keys)
		return nil, err
	}
	return keys, nil
}

// newClient returns the client of m's provisioning servers, which attests with a and trusts
// the CA of SECRET_PROVISION_CA_CHAIN_PATH.
func newClient(m *manifest.Manifest, a attest.Attester) (*client.Client, error) {
	ca, err := caHostPath(m)
	if err != nil {
		return nil, err
	}
	// The bytes checked are the bytes used: the host may change the file meanwhile.
	pem, err := m.ReadTrustedFile(ca)
	if err != nil {
		return nil, fmt.Errorf("SECRET_PROVISION_CA_CHAIN_PATH: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("SECRET_PROVISION_CA_CHAIN_PATH: %s holds no PEM certificate", ca)
	}
	// The evidence names the workload: in a CVM it measures only the VM's image.
	return &client.Client{Servers: m.Provisioning.Servers, Roots: roots, Attester: attest.ForWorkload(a, manifest.Measure(m))}, nil
}

// wipe clears the keys.
func wipe(keys map[string]pf.Key) {
	for name := range keys {
		keys[name] = pf.Key{}
	}
}

// caHostPath returns the host path of SECRET_PROVISION_CA_CHAIN_PATH, a path in the workload's
// view (relative to fs.start_dir when relative), through the mount that holds it. It must be a
// trusted file, so that the measurement covers whom the workload trusts with its keys.
func caHostPath(m *manifest.Manifest) (string, error) {
	p := m.Provisioning.CAChainPath
	if p == "" {
		return "", errors.New("the manifest has encrypted mounts or ppml.network = \"mesh\", but no loader.env.SECRET_PROVISION_CA_CHAIN_PATH: name the CA certificate of the provisioning servers")
	}
	inView := path.Clean(p)
	if !path.IsAbs(p) {
		inView = path.Join(m.StartDir, p)
	}
	mt, rel, ok := mountOf(m.Mounts, inView)
	switch {
	case !ok:
		return "", fmt.Errorf("SECRET_PROVISION_CA_CHAIN_PATH %s is in none of fs.mounts: mount the folder that holds it", inView)
	case mt.Type != manifest.Chroot:
		return "", fmt.Errorf("SECRET_PROVISION_CA_CHAIN_PATH %s is in the %s mount at %s: it must be a plain (chroot) file", inView, mt.Type, mt.Path)
	}
	host := filepath.Join(mt.HostPath(), rel)
	abs, err := filepath.Abs(host)
	if err != nil {
		return "", err
	}
	if !slices.ContainsFunc(m.TrustedFiles, func(tf manifest.TrustedFile) bool {
		p, err := filepath.Abs(tf.Path())
		return err == nil && p == abs
	}) {
		return "", fmt.Errorf("SECRET_PROVISION_CA_CHAIN_PATH %s (host file %s) is not a trusted file: add it to sgx.trusted_files", inView, host)
	}
	return host, nil
}

// mountOf returns the mount that the workload's path p is in (the last declared, as later mounts
// hide earlier ones) and p relative to the mount's path.
func mountOf(mounts []manifest.Mount, p string) (manifest.Mount, string, bool) {
	for _, mt := range slices.Backward(mounts) {
		if rel, ok := within(path.Clean(mt.Path), p); ok {
			return mt, rel, true
		}
	}
	return manifest.Mount{}, "", false
}

// within reports whether p is dir or inside it, and returns p relative to dir ("" for dir).
func within(dir, p string) (string, bool) {
	if p == dir {
		return "", true
	}
	if dir == "/" {
		return p[1:], true
	}
	rel, ok := strings.CutPrefix(p, dir+"/")
	return rel, ok
}
