//! Ingest: deciding which windows a poll reads ([`plan`]), remembering what has been counted so every
//! call is counted once ([`ledger`]), and the background loop that fetches, admits and commits
//! ([`poller`]).

pub mod ledger;
pub mod plan;
pub mod poller;
