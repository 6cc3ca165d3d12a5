package provision

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ppml/ppml/store"
)

// Metrics are the server's Prometheus metrics.
type Metrics struct {
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
	rejected  prometheus.Counter
}

// NewMetrics makes the server's metrics and registers them with reg, if not nil:
//
//	ppml_provision_decisions_total{decision="allow|deny",tee="sgx|tdx|snp|"}
//	ppml_provision_request_seconds (histogram, from accept to the answer)
//	ppml_provision_connections_rejected_total (over the connection limit)
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ppml_provision_decisions_total",
			Help: "Provisioning decisions by outcome and kind of evidence.",
		}, []string{"decision", "tee"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ppml_provision_request_seconds",
			Help:    "Time from accepting a connection to answering it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ppml_provision_connections_rejected_total",
			Help: "Connections closed at once because the connection limit was reached.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.latency, m.rejected)
	}
	return m
}

func (m *Metrics) observe(rec *store.AuditRecord, d time.Duration) {
	m.decisions.WithLabelValues(string(rec.Decision), rec.TEE).Inc()
	m.latency.Observe(d.Seconds())
}
