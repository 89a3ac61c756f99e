//! Everything the exporter exposes: the classification of calls into label values, the aggregates as
//! plain data, the exporter's own telemetry, the table of metric families, the collectors that fill
//! them, content negotiation, and the rendering as OpenMetrics or Prometheus text.

pub mod aggregate;
pub mod classify;
pub mod collect;
pub mod expose;
pub mod families;
pub mod negotiate;
pub mod telemetry;
