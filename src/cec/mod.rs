//! The vendor API, as documented in `../shared/cec-api/`: wire types, typed records, the token cache and
//! the paging client. Nothing here counts or aggregates; it only turns HTTP exchanges into typed values.

pub mod auth;
pub mod client;
pub mod record;
pub mod wire;
