//! Everything the exporter exposes: the classification of calls into label values, the aggregates as
//! plain data, the exporter's own telemetry, and their rendering as OpenMetrics or Prometheus text.

pub mod aggregate;
pub mod classify;
pub mod expose;
pub mod telemetry;
