//! SIP signalling: messages, transports, transactions, the endpoint that ties them together,
//! the registrar and digest authentication.

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod message;
pub mod registrar;
pub mod transaction;
pub mod transport;
