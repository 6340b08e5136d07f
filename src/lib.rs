//! switchboard: a voice-first, omnichannel contact-centre server.
//!
//! The architecture in a page (see `ARCHITECTURE.md` for the long form):
//!
//! * [`sip::message`] (PURE) parses and prints SIP messages (RFC 3261 §7, §20, §25).
//! * [`sip::transport`] (DRIVER) moves bytes over UDP and TCP (RFC 3261 §18, RFC 3581).
//! * [`sip::transaction`] (SANS-IO) holds the RFC 3261 §17 / RFC 6026 state machines.
//! * [`sip::endpoint`] (DRIVER) owns the transaction table and dispatches requests to the
//!   [`sip::registrar`] and to call actors in [`session`].
//! * [`media`] anchors RTP: SDP rewriting ([`media::sdp`]) and one media session per call
//!   ([`media::engine`]) on port pairs from [`media::ports`].
//! * [`store`] persists users, bindings, customers, sessions, calls and call records through
//!   one writer task (SQLite by default, PostgreSQL by URL).
//! * [`chat`] (DRIVER, thin) keeps conversations on text channels (web chat, gateways) on the
//!   same sessions and customers as calls.
//! * [`event`] (PURE) is the typed vocabulary of the event log.
//! * [`api`] serves `/healthz` and `/metrics` over HTTP.
//!
//! Error and panic policy: a panic is a bug. Input from the network, the database or files
//! never panics; each module has one error enum and maps it to the wire in one place.

#![cfg_attr(test, allow(clippy::disallowed_methods))] // unit tests may read real time

pub mod acd;
pub mod api;
pub mod assets;
pub mod chat;
pub mod clock;
pub mod config;
pub mod domain;
pub mod event;
pub mod ivr;
#[cfg(test)]
mod layering;
pub mod media;
pub mod server;
pub mod session;
pub mod sip;
pub mod store;
