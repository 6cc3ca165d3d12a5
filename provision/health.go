package provision

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Ready reports whether the server can serve requests, or says what it lacks: it accepts
// connections (Serve runs, Shutdown was not called), and its store answers within ctx. Its
// configuration (policy, certificate, verifiers and the collateral folders they read) is loaded
// and checked before NewServer returns, and a SIGHUP that does not load keeps the one before.
func (s *Server) Ready(ctx context.Context) error {
	s.mu.Lock()
	listening, closing := s.listener != nil, s.closing
	s.mu.Unlock()
	switch {
	case closing:
		return errors.New("stopping: no new connections are accepted")
	case !listening:
		return errors.New("not accepting connections yet")
	}
	if _, err := s.store.ListKeys(ctx); err != nil {
		return fmt.Errorf("%w: %w", errStoreUnreachable, err)
	}
	return nil
}

// errStoreUnreachable is what Readyz tells of a store error, whose details (a database's host,
// name and user) are for the server's log only.
var errStoreUnreachable = errors.New("store unreachable")

// The paths of the probes on the metrics listener.
const (
	HealthzPath = "/healthz"
	ReadyzPath  = "/readyz"
)

// readyTimeout bounds the store check of one /readyz request.
const readyTimeout = 2 * time.Second

// Readyz is the readiness probe (GET /readyz): 200 and "ready" when Ready reports nothing, else
// 503 and what is not ready. A load balancer sends workloads only to a server that is ready.
func (s *Server) Readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.Ready(ctx); err != nil {
		if errors.Is(err, errStoreUnreachable) {
			s.log.Warn("not ready", "err", err)
			err = fmt.Errorf("%w (the server's log says why)", errStoreUnreachable)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Healthz is the liveness probe (GET /healthz): 200 and "ok" while the process answers at all. It
// checks nothing else, so that an unreachable database makes servers unready, not restarted.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}
