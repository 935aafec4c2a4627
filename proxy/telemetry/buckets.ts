// The one latency bucket layout of the proxy: Istio's default for
// istio_request_duration_milliseconds (upper bounds in ms; each bucket counts durations at or
// under its bound and above the previous one; one open-ended bucket follows). The per-edge
// reports to the control server are a view of the same histograms, so they use the same bounds.
// A module of its own so the control server can read the layout without loading prom-client.
export const DURATION_BUCKETS_MS: readonly number[] = Object.freeze([
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
]);
