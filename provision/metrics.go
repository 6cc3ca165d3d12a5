package provision

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ppml/ppml/store"
)

// Metrics are the server's Prometheus metrics.
type Metrics struct {
	decisions         *prometheus.CounterVec
	latency           prometheus.Histogram
	active            prometheus.Gauge
	rejected          prometheus.Counter
	empty             prometheus.Counter
	handshakeFailures *prometheus.CounterVec
}

// The causes of handshake failures, the label of ppml_provision_handshake_failures_total.
const (
	causeSilent  = "silent"  // no byte within first_byte_timeout
	causeTimeout = "timeout" // no handshake within handshake_timeout
	causeError   = "error"   // anything else: not TLS, no client certificate, an alert, a hang-up
	// The client refused the server's certificate (an alert about it): no decision of the
	// server's, so not audited, but logged (at most once a minute) for the owner to act on.
	causeServerCertificate = "server_certificate"
)

// NewMetrics makes the server's metrics and registers them with reg, if not nil. Each
// connection accepted before Shutdown counts in exactly one of the four counters after the gauge:
//
//	ppml_provision_connections_active (gauge: the connections being served; at max_connections,
//	  more wait to be accepted)
//	ppml_provision_connections_rejected_total (closed at once: their address had
//	  max_connections_per_peer connections)
//	ppml_provision_connections_empty_total (closed by the peer before sending a byte, as port
//	  probes and health checks are; not audited)
//	ppml_provision_handshake_failures_total{cause="silent|timeout|error|server_certificate"}
//	  (TLS handshakes that failed: no byte within first_byte_timeout, no handshake within
//	  handshake_timeout, an error, audited: the first from an address at once, those that
//	  follow within a minute in one summary; or the client's refusal of the server's
//	  certificate, which is not a decision of the server's and is only logged)
//	ppml_provision_decisions_total{decision="allow|deny",tee="sgx|tdx|snp|"} (connections whose
//	  handshake succeeded, each with its audit record)
//	ppml_provision_request_seconds (histogram of those, from accept to the answer)
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ppml_provision_decisions_total",
			Help: "Provisioning decisions, one per connection whose TLS handshake succeeded, by outcome and kind of evidence.",
		}, []string{"decision", "tee"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ppml_provision_request_seconds",
			Help:    "Time from accepting a connection whose TLS handshake succeeded to answering it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ppml_provision_connections_active",
			Help: "Connections being served; at max_connections, more wait to be accepted.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ppml_provision_connections_rejected_total",
			Help: "Connections closed at once because their address had max_connections_per_peer connections.",
		}),
		empty: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ppml_provision_connections_empty_total",
			Help: "Connections closed by the peer before sending a byte (port probes, health checks); not audited.",
		}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ppml_provision_handshake_failures_total",
			Help: "TLS handshakes that failed: no byte within first_byte_timeout (silent), no handshake within handshake_timeout (timeout), or an error.",
		}, []string{"cause"}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.latency, m.active, m.rejected, m.empty, m.handshakeFailures)
	}
	return m
}

func (m *Metrics) observe(rec *store.AuditRecord, d time.Duration) {
	m.decisions.WithLabelValues(string(rec.Decision), rec.TEE).Inc()
	m.latency.Observe(d.Seconds())
}
