package provision

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// get asks handler for path and returns the status and body.
func get(t *testing.T, handler http.HandlerFunc, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	handler(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

// TestReadyz: the readiness probe says ready only while the server accepts connections and its
// store answers, and says which is missing; the liveness probe asks for nothing.
func TestReadyz(t *testing.T) {
	tb := newTestbed(t, byEnclave)
	// Serve runs in a goroutine of its own: ready once it has taken the listener.
	deadline := time.Now().Add(5 * time.Second)
	for tb.server.Ready(context.Background()) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get(t, tb.server.Readyz, "/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("serving: %d %q", code, body)
	}

	idle, err := NewServer(tb.server.state.Load().cfg, tb.store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, idle.Readyz, "/readyz"); code != 503 || body != "not ready: not accepting connections yet\n" {
		t.Fatalf("before Serve: %d %q", code, body)
	}

	tb.server.Shutdown(context.Background())
	if code, body := get(t, tb.server.Readyz, "/readyz"); code != 503 || !strings.Contains(body, "stopping") {
		t.Fatalf("after Shutdown: %d %q", code, body)
	}

	tb.serve(t, idle)
	for idle.Ready(context.Background()) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	tb.store.Close()
	// The store's error (for PostgreSQL: its host, database and user) is for the server's log,
	// not for whoever reaches the metrics port.
	if err := idle.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Ready with the store closed: %v", err)
	}
	if code, body := get(t, idle.Readyz, "/readyz"); code != 503 || body != "not ready: store unreachable (the server's log says why)\n" {
		t.Fatalf("store closed: %d %q", code, body)
	}
	if code, body := get(t, Healthz, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
}
