package serve

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the service's Prometheus metrics, in a registry of its own (never the global one, so
// that several servers live in one process, e.g. in tests).
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	batchSize prometheus.Histogram
	rejected  *prometheus.CounterVec
	decoded   prometheus.Counter
	enrolled  prometheus.Counter
	inflight  prometheus.Gauge
	species   prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "protoherb_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "protoherb_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"route"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "protoherb_batch_size", Help: "Images per forward pass.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "protoherb_rejected_total", Help: "Requests refused, by reason (overload, too_large, slow_upload, unsupported, corrupt, unauthorized, cross_origin, storage).",
		}, []string{"reason"}),
		decoded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "protoherb_images_decoded_total", Help: "Uploaded images whose pixels were decoded (after the header checks).",
		}),
		enrolled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "protoherb_specimens_enrolled_total", Help: "Specimens added to prototypes.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "protoherb_identify_in_flight", Help: "Identify requests being served.",
		}),
		species: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "protoherb_species", Help: "Species (prototypes) known.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.batchSize, m.rejected, m.decoded, m.enrolled, m.inflight, m.species,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// budgets exports the bytes held from the decode and upload budgets.
func (m *metrics) budgets(decode, uploads *weighted) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "protoherb_decode_bytes_in_use", Help: "Bytes of the decode budget held by decodes in progress.",
		}, func() float64 { return float64(decode.used()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "protoherb_decode_budget_bytes", Help: "The decode budget (--decode-budget).",
		}, func() float64 { return float64(decode.size) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "protoherb_upload_bytes_in_use", Help: "Bytes of uploads being received or held.",
		}, func() float64 { return float64(uploads.used()) }),
	)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// statusWriter records the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (read deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// instrument counts and times the requests of one route.
func (m *metrics) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	lat := m.latency.WithLabelValues(route)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		lat.Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
	}
}
