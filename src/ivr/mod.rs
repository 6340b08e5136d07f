//! IVR and dialplans: the routing and menu language an operator writes in `dialplans/`, and the
//! interpreter that runs it for each call.
//!
//! * [`plan`]: the checked dialplan (PURE data).
//! * [`parse`]: TOML files (or a webhook's JSON steps) → [`plan::Dialplan`], every error with
//!   file:line:column and a hint (PURE; `switchboard dialplan check`).
//! * [`route`]: which route a call takes (number, caller, calendars in a time zone) (PURE).
//! * [`template`]: `{{attribute}}` placeholders (PURE).
//! * [`interp`]: the per-call interpreter (SANS-IO).
//! * [`tts`]: text to speech through espeak-ng, cached as WAV (DRIVER).
//! * [`webhook`]: the HTTP POST of a webhook step (DRIVER).
//! * [`reload`]: the live plan, reloaded on file change and SIGHUP (DRIVER).

pub mod interp;
pub mod parse;
pub mod plan;
pub mod reload;
pub mod route;
pub mod template;
pub mod tts;
pub mod webhook;
