package provision

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/nvidia"
	"github.com/ppml/ppml/provision/wire"
	"github.com/ppml/ppml/ratls"
	"github.com/ppml/ppml/store"
)

// Server is the secret provisioning server. Its policy can be replaced while it runs (Reload);
// a connection keeps the policy it started with.
type Server struct {
	store   store.Store
	log     *slog.Logger
	metrics *Metrics
	// now is the time at which evidence is verified and by which audit records are dated (tests
	// pin it); deadlines and latencies run on the wall clock.
	now func() time.Time

	state atomic.Pointer[state]
	// slots holds one token per connection served; Serve takes one before it accepts, so that
	// over max_connections connections wait in the listen backlog.
	slots chan struct{}
	stop  chan struct{} // closed by Shutdown, which ends Serve's wait for a slot
	// failures keeps the audit records of failed handshakes to a few per peer address.
	failures failureLog
	// certificateRefused logs, rarely, the clients that refused the server's certificate.
	certificateRefused rareLog
	// abandon ends the context of every request in progress, and what it fetches, when
	// Shutdown gives up waiting for them.
	requests context.Context
	abandon  context.CancelFunc

	// rounds holds the nodes of distributed jobs waiting for the rest of their job.
	rounds rounds

	// lastCheckpoint is the ID of the newest record this server signed a checkpoint of.
	lastCheckpoint atomic.Int64
	// marks are the latest key states the server knows of; it releases no older version.
	marks keyMarks

	mu       sync.Mutex
	closing  bool
	listener net.Listener
	active   map[net.Conn]struct{} // the connections in progress, which Shutdown may close
	peers    map[string]int        // the connections in progress by peer address
	conns    sync.WaitGroup        // one per connection in progress
}

// state is what a configuration makes: the policy, the verifiers, the TLS setup.
type state struct {
	cfg      *Config
	registry attest.Registry
	gpus     []nvidia.Anchor // the roots of trust of GPU evidence
	tls      *tls.Config
	signer   crypto.Signer // the TLS key, which signs the audit chain's checkpoints
}

// NewServer makes a server for cfg with keys and audit records in st. log and metrics may be
// nil.
func NewServer(cfg *Config, st store.Store, log *slog.Logger, metrics *Metrics) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	s := &Server{
		store: st, log: log, metrics: metrics, now: time.Now,
		slots:  make(chan struct{}, cfg.MaxConnections),
		stop:   make(chan struct{}),
		active: map[net.Conn]struct{}{},
		peers:  map[string]int{},
	}
	s.failures = failureLog{interval: failureInterval, write: s.auditFailure}
	s.requests, s.abandon = context.WithCancel(context.Background())
	if err := s.Reload(cfg); err != nil {
		return nil, err
	}
	if err := s.marks.load(cfg.AuditCheckpointFile); err != nil {
		return nil, err
	}
	go s.checkpoints(cfg.AuditCheckpointInterval.Duration)
	return s, nil
}

// checkpoints signs a checkpoint of the audit chain every interval until Shutdown.
func (s *Server) checkpoints(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.checkpoint()
		}
	}
}

// checkpoint signs a checkpoint of the audit chain's head, unless this server signed one of
// the same head already.
func (s *Server) checkpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
	defer cancel()
	id, _, err := s.store.AuditHead(ctx)
	if err == nil && (id == 0 || id == s.lastCheckpoint.Load()) {
		return
	}
	var c store.Checkpoint
	if err == nil {
		c, err = store.SignCheckpoint(ctx, s.store, s.state.Load().signer, s.marks.snapshot())
	}
	if err != nil {
		s.log.Error("audit checkpoint not signed", "err", err)
		return
	}
	s.marks.raise(c.Keys)
	s.lastCheckpoint.Store(c.RecordID)
	s.log.Debug("audit checkpoint signed", "record", c.RecordID)
	if file := s.state.Load().cfg.AuditCheckpointFile; file != "" {
		if err := store.AppendCheckpoint(file, c); err != nil {
			s.log.Error("audit checkpoint not anchored", "checkpoint", c.ID, "err", err)
		}
	}
}

// checkpointTimeout bounds the signing of one checkpoint.
const checkpointTimeout = 10 * time.Second

// Reload replaces the server's configuration: its policy, trusted platforms, certificate,
// timeouts and max_connections_per_peer. The listening address and max_connections stay as they
// were.
func (s *Server) Reload(cfg *Config) error {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("server key %s: a %T cannot sign", cfg.TLSKey, cert.PrivateKey)
	}
	registry, err := cfg.Registry()
	if err != nil {
		return err
	}
	gpus, err := cfg.GPUAnchors()
	if err != nil {
		return err
	}
	s.state.Store(&state{
		cfg:      cfg,
		signer:   signer,
		registry: registry,
		gpus:     gpus,
		// The client's certificate is verified after the handshake (handle), so that a ppml
		// client can be told why it is refused; nothing is released before.
		tls: ratls.ServerConfig(cert),
	})
	return nil
}

// Serve accepts connections on ln until Shutdown.
// Then it returns nil at once, without waiting for the connections in progress: Shutdown does.
//
// It serves max_connections at once: it accepts the next connection when one ends, and until
// then new connections wait in ln's backlog. A connection from a peer address that already has
// max_connections_per_peer is closed at once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listener = ln
	s.mu.Unlock()
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.stop:
			return nil
		}
		conn, err := ln.Accept()
		if err != nil {
			<-s.slots
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			if acceptCanRetry(err) {
				// Out of descriptors, say: the connections in progress will free some.
				s.log.Warn("accept failed; retrying", "err", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		st, peer := s.state.Load(), peerAddr(conn.RemoteAddr())
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			<-s.slots
			conn.Close()
			continue
		}
		if s.peers[peer] >= st.cfg.MaxConnectionsPerPeer {
			s.mu.Unlock()
			<-s.slots
			s.log.Debug("connection closed: its address has max_connections_per_peer", "peer", conn.RemoteAddr().String())
			s.metrics.rejected.Inc()
			conn.Close()
			continue
		}
		s.peers[peer]++
		s.active[conn] = struct{}{}
		s.conns.Add(1)
		s.mu.Unlock()
		s.metrics.active.Inc()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.active, conn)
				if s.peers[peer]--; s.peers[peer] == 0 {
					delete(s.peers, peer)
				}
				s.mu.Unlock()
				s.metrics.active.Dec()
				<-s.slots
				s.conns.Done()
			}()
			s.handle(conn, peer, st)
		}()
	}
}

// acceptCanRetry reports whether an error of Accept passes: a timeout, a connection aborted
// before it was accepted, or a process or system out of descriptors or memory.
func acceptCanRetry(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.ECONNABORTED, syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// peerAddr is the IP address of a connection's peer: what max_connections_per_peer and the
// summaries of failed handshakes count by.
func peerAddr(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap().String()
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// abandonWait bounds the wait for the handlers of the connections that Shutdown closed: they end
// at once, as their connections and contexts do, and write their audit records.
const abandonWait = 2 * time.Second

// Shutdown stops accepting connections, which ends Serve, and waits for the connections in
// progress to finish, each with its audit record. If ctx ends first, Shutdown closes those still
// open, cancels what their requests fetch, waits up to abandonWait for their handlers to write
// their audit records, and returns ctx.Err(). Last, it writes the summaries of failed handshakes
// whose interval has not ended, and signs a checkpoint of the audit chain.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.stop)
	}
	if s.listener != nil {
		s.listener.Close()
	}
	s.mu.Unlock()
	defer s.checkpoint()
	defer s.failures.close()
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for conn := range s.active {
		conn.Close()
	}
	s.mu.Unlock()
	s.abandon()
	select {
	case <-done:
	case <-time.After(abandonWait):
		s.log.Error("connections still in progress after shutdown: their audit records may be lost")
	}
	return ctx.Err()
}

// handle serves one connection from the address peer: handshake, verification of the client's
// RA-TLS certificate, the request, the policy's decision, the answer and its audit record.
func (s *Server) handle(conn net.Conn, peer string, st *state) {
	defer conn.Close()
	start := time.Now()
	rec := store.AuditRecord{Time: s.now(), Peer: conn.RemoteAddr().String(), Decision: store.Deny}

	// A TLS client speaks first: a connection that sends nothing gives its slot back after
	// first_byte_timeout, well before handshake_timeout.
	silence := min(st.cfg.FirstByteTimeout.Duration, st.cfg.HandshakeTimeout.Duration)
	conn.SetDeadline(start.Add(silence))
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		// A connection closed before sending anything (a port probe) asked for nothing.
		s.log.Debug("connection closed before sending anything", "peer", rec.Peer)
		s.metrics.empty.Inc()
		return
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		s.handshakeFailed(peer, &rec, causeSilent, fmt.Errorf("nothing received within %v", silence))
		return
	} else if err != nil {
		s.handshakeFailed(peer, &rec, causeError, err)
		return
	}
	conn.SetDeadline(start.Add(st.cfg.HandshakeTimeout.Duration))
	tc := tls.Server(&replayConn{Conn: conn, first: first[:]}, st.tls)
	if err := tc.Handshake(); err != nil {
		if clientRefusedCertificate(err) {
			s.metrics.handshakeFailures.WithLabelValues(causeServerCertificate).Inc()
			s.certificateRefused.log(s.log, rec.Peer, err)
			return
		}
		cause := causeError
		if errors.Is(err, os.ErrDeadlineExceeded) {
			cause = causeTimeout
		}
		s.handshakeFailed(peer, &rec, cause, err)
		return
	}
	audited := false
	defer func() { s.finish(&rec, start, audited) }()
	// The request's deadline bounds the connection and all that verifying its evidence fetches.
	deadline := time.Now().Add(st.cfg.RequestTimeout.Duration)
	conn.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(s.requests, deadline)
	defer cancel()
	claims, verr := ratls.VerifyPeer(ctx, tc.ConnectionState(), st.registry, s.now())
	fillClaims(&rec, claims)
	if be := (*ratls.BindingError)(nil); errors.As(verr, &be) {
		fillClaims(&rec, be.Claims) // where the replayed evidence came from
	}
	req, err := wire.ReadRequest(tc)
	if err != nil {
		rec.Reason = "request: " + err.Error()
		if verr != nil {
			rec.Reason = "attestation: " + verr.Error() + "; " + rec.Reason
		}
		return
	}
	var gpus *GPUInput
	var log *RTMR3Log
	if verr == nil {
		if gpus, err = gpuInput(tc.ConnectionState(), st.gpus, s.now()); err != nil {
			verr = err
		} else if log, err = rtmr3Input(tc.ConnectionState(), claims); err != nil {
			verr = err
		}
	}
	names, reason := s.decide(st, claims, verr, gpus, log, req, &rec)
	if reason != "" {
		rec.Reason = reason
		audited = s.refuse(tc, st, req, &rec, false)
		return
	}
	if req.Join != nil {
		audited = s.join(tc, conn, st, req, peer, &rec)
		return
	}
	secrets := make([][]byte, len(names))
	defer func() {
		for _, k := range secrets {
			clear(k)
		}
	}()
	for i, name := range names {
		var version int
		if secrets[i], version, err = s.store.Key(ctx, name, store.Current); err != nil {
			rec.Reason = fmt.Sprintf("key %q: %v", name, err)
			if mark, ok := s.marks.seen(name); ok && !mark.Deleted && errors.Is(err, store.ErrNotFound) {
				rec.Reason += fmt.Sprintf(" (this server knows it at %s: unless ppml key delete deleted it, someone who can write the database did)", mark)
			}
			audited = s.refuse(tc, st, req, &rec, false)
			return
		}
		if reason := s.marks.release(name, version); reason != "" {
			rec.Reason = reason
			audited = s.refuse(tc, st, req, &rec, false)
			return
		}
	}
	// The release is on record before the keys leave: no record, no keys.
	rec.Decision, rec.Keys = store.Allow, names
	if _, err := s.store.AppendAudit(context.Background(), rec); err != nil {
		rec.Decision, rec.Keys = store.Deny, nil
		rec.Reason = "audit log unavailable: " + err.Error()
		tc.Write(wire.Refusal(req, "the server cannot record its decision"))
		return
	}
	audited = true
	resp := wire.Grant(req, secrets)
	_, err = tc.Write(resp)
	clear(resp)
	if err != nil {
		s.log.Warn("the keys may not have reached the client", "peer", rec.Peer, "err", err)
		return
	}
	tc.Close() // close_notify, as Gramine's server sends
}

// replayConn is a connection whose first bytes, read before, are read again.
type replayConn struct {
	net.Conn
	first []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(b, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// clientRefusedCertificate reports whether err, a failed handshake, is the client's refusal of
// the server's certificate: a TLS alert about certificates, as a client that does not trust the
// server's CA, or reaches it by a name the certificate lacks, sends.
func clientRefusedCertificate(err error) bool {
	// crypto/tls returns an alert it receives as a net.OpError "remote error" around its own
	// unexported alert type, a uint8 holding the alert's code (RFC 8446 §6).
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		return false
	}
	code := reflect.ValueOf(op.Err)
	if code.Kind() != reflect.Uint8 {
		return false
	}
	switch code.Uint() {
	case 42, 43, 44, 45, 46, 48: // bad, unsupported, revoked, expired, unknown certificate; unknown CA
		return true
	}
	return false
}

// rareLog logs a message at most once an interval, saying how many it left out, so that peers
// cannot flood the log with it.
type rareLog struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

// log logs that the client at peer refused the server's certificate with err.
func (r *rareLog) log(log *slog.Logger, peer string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.last) < time.Minute {
		r.skipped++
		return
	}
	log.Warn("a client refused the server's certificate: check that clients have the server's ca.crt and reach it by a name its certificate has (ppml serve setup --host)",
		"peer", peer, "err", err, "since_last_logged", r.skipped)
	r.last, r.skipped = time.Now(), 0
}

// handshakeReason starts the reason of a failed handshake's audit record.
const handshakeReason = "TLS handshake: "

// handshakeFailed counts and audits the failed handshake of a connection from the address
// peer. It showed no evidence: the failures that follow another from the same address are
// summarized (failureLog).
func (s *Server) handshakeFailed(peer string, rec *store.AuditRecord, cause string, err error) {
	rec.Reason = handshakeReason + err.Error()
	s.metrics.handshakeFailures.WithLabelValues(cause).Inc()
	if !s.failures.add(peer, *rec) {
		s.log.Debug("TLS handshake failed", "peer", rec.Peer, "reason", rec.Reason)
	}
}

// auditFailure writes rec, the record of a failed handshake or a summary of several, to the audit
// log and the log.
func (s *Server) auditFailure(rec store.AuditRecord) {
	if _, err := s.store.AppendAudit(context.Background(), rec); err != nil {
		s.log.Error("audit record lost", "err", err, "peer", rec.Peer)
	}
	s.log.Warn("TLS handshake failed", "peer", rec.Peer, "reason", rec.Reason)
}

// refuse records rec, a refusal, and answers the client. The client learns the reference of
// the audit record (store.AuditRef) and nothing of the policy (workloads, constraints, key
// names), since any peer whose evidence verifies would learn it too, nor how many decisions
// the server made; the owner finds the reason with ppml audit --ref. With explain_refusals
// (development), or explain (a reason that tells nothing of the policy to a client that the
// policy admitted), the reason goes to the client as well. It reports whether the record was
// written.
func (s *Server) refuse(w io.Writer, st *state, req *wire.Request, rec *store.AuditRecord, explain bool) bool {
	id, err := s.store.AppendAudit(context.Background(), *rec)
	var answer string
	switch {
	case err != nil:
		s.log.Error("audit record lost", "err", err, "peer", rec.Peer)
		answer = "the server cannot record its decision"
	case st.cfg.ExplainRefusals || explain:
		answer = fmt.Sprintf("%s (audit record %s)", rec.Reason, s.store.AuditRef(id))
	default:
		answer = fmt.Sprintf("see audit record %s: the data owner reads why with ppml audit --ref %[1]s", s.store.AuditRef(id))
	}
	if b := wire.Refusal(req, answer); b != nil {
		w.Write(b)
	}
	return err == nil
}

// decide applies the policy: it returns the names of the keys to release, or the reason to
// refuse.
func (s *Server) decide(st *state, claims *attest.Claims, verr error, gpus *GPUInput, log *RTMR3Log, req *wire.Request, rec *store.AuditRecord) ([]string, string) {
	if verr != nil {
		return nil, "attestation failed: " + verr.Error()
	}
	w, gpuRecords, err := st.cfg.Workloads.AdmitWithGPUs(claims, gpus, log)
	rec.GPUs = gpuRecords
	if err != nil {
		reason := refusal(err, claims)
		if log != nil {
			reason += "; " + log.String()
		}
		return nil, reason
	}
	if log != nil {
		// The record names what started in the TD, admitted or not: the reason of an admission.
		rec.Reason = log.String()
	}
	rec.Workload = w.Name
	if req.Join != nil {
		return nil, joinRefusal(st.cfg.job(req.Join.Job), req.Join.Job, w.Name)
	}
	if req.Gramine {
		return w.Keys[:1], ""
	}
	for _, name := range req.Keys {
		if !slices.Contains(w.Keys, name) {
			return nil, fmt.Sprintf("workload %q may not have key %q (it may have %q)", w.Name, name, w.Keys)
		}
	}
	return req.Keys, ""
}

// refusal is the audit reason of a policy's refusal: with evidence whose TCB is not UpToDate,
// what the TCB status means and what to update, as ppml quote verify says it.
func refusal(err error, c *attest.Claims) string {
	if c.TCBStatus == "UpToDate" && len(c.Behind) == 0 || c.TCBStatus == "" {
		return err.Error()
	}
	return err.Error() + "; TCB " + c.TCBExplanation()
}

// finish writes the audit record (unless it is written already), the log line and the metrics
// of a connection.
func (s *Server) finish(rec *store.AuditRecord, start time.Time, audited bool) {
	if !audited {
		if _, err := s.store.AppendAudit(context.Background(), *rec); err != nil {
			s.log.Error("audit record lost", "err", err, "peer", rec.Peer)
		}
	}
	attrs := []any{"peer", rec.Peer, "decision", rec.Decision, "tee", rec.TEE, "workload", rec.Workload}
	if rec.Decision == store.Allow {
		s.log.Info("keys released", append(attrs, "keys", rec.Keys)...)
	} else {
		s.log.Warn("refused", append(attrs, "reason", rec.Reason)...)
	}
	s.metrics.observe(rec, time.Since(start))
}

// fillClaims records what the client's evidence claims.
func fillClaims(rec *store.AuditRecord, c *attest.Claims) {
	if c == nil {
		return
	}
	rec.TEE, rec.Platform, rec.TCBStatus, rec.Debug = string(c.TEE), string(c.Platform), c.TCBStatus, c.Debug
	rec.ISVProdID, rec.ISVSVN = c.ISVProdID, c.ISVSVN
	rec.AdvisoryIDs, rec.TCBDate, rec.TCBEvaluationDataNumber, rec.QEStatus = c.AdvisoryIDs, c.TCBDate, c.TCBEvaluationDataNumber, c.QEStatus
	if m := c.TDXModule; m != nil {
		rec.TDXModule = &store.TDXModule{ID: m.ID, ISVSVN: m.ISVSVN, Status: m.Status}
	}
	for _, f := range []struct {
		dst *string
		src attest.Hex
	}{{&rec.MREnclave, c.MREnclave}, {&rec.MRSigner, c.MRSigner}, {&rec.MRTD, c.MRTD}, {&rec.Measurement, c.Measurement}} {
		if f.src != nil {
			*f.dst = f.src.String()
		}
	}
	for _, r := range c.RTMRs {
		rec.RTMRs = append(rec.RTMRs, r.String())
	}
	if m := attest.Workload(c.ReportData); m != nil {
		rec.Manifest = m.String()
	}
}
