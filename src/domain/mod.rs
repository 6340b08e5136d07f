//! The domain's vocabulary (PURE), shared by every layer and owned by none: entity ids, call
//! direction, who hung up and why (with the SIP status each cause stands for), identity kinds,
//! and the one rule that picks the best failure of a forked search (RFC 3261 §16.7 step 6).
//! `store` stores these, `session` decides them, `api` and `event` show them; none of those
//! modules defines its own.

mod ids;
pub mod phone;

use serde::{Deserialize, Serialize};

pub use ids::{
    ApiKeyId, AttachmentId, CallId, ConversationId, CustomerId, LegId, MessageId, SessionId,
    WebhookId,
};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses the stored text.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Kind of customer identity.
    IdentityKind {
        /// A telephone number (E.164 preferred).
        Phone = "phone",
        /// A SIP URI.
        Sip = "sip",
        /// An email address.
        Email = "email",
        /// A web chat visitor id or a gateway's user id (`<channel>:<id>`).
        Chat = "chat",
        /// The customer's id in an external CRM.
        Crm = "crm",
    }
);

text_enum!(
    /// What kind of messaging channel a channel is.
    ChannelKind {
        /// The web chat widget (`/chat`, `/widget.js`).
        Web = "web",
        /// An SMS gateway.
        Sms = "sms",
        /// A WhatsApp gateway.
        Whatsapp = "whatsapp",
        /// A social network's messaging.
        Social = "social",
        /// A bot.
        Bot = "bot",
        /// Any other gateway.
        Other = "other",
    }
);

text_enum!(
    /// Who wrote a message.
    AuthorKind {
        /// The customer.
        Customer = "customer",
        /// An agent (or an integrator replying through the API).
        Agent = "agent",
        /// A bot.
        Bot = "bot",
        /// The server (notices such as "the agent left").
        System = "system",
    }
);

text_enum!(
    /// Whether a conversation takes messages.
    ConversationState {
        /// Open.
        Open = "open",
        /// Closed (by the API, an agent or the customer).
        Closed = "closed",
    }
);

text_enum!(
    /// Call direction relative to the contact centre.
    Direction {
        /// From outside in.
        Inbound = "inbound",
        /// From inside out.
        Outbound = "outbound",
        /// Between local users.
        Internal = "internal",
    }
);

text_enum!(
    /// Who ended the call.
    HangupBy {
        /// The calling party.
        Caller = "caller",
        /// The called party.
        Callee = "callee",
        /// The server (timeout, error, shutdown).
        System = "system",
    }
);

text_enum!(
    /// Role of a leg within its call.
    LegRole {
        /// The leg towards the caller.
        Caller = "caller",
        /// A leg towards a callee.
        Callee = "callee",
        /// A listener (a supervisor monitoring the call).
        Monitor = "monitor",
    }
);

text_enum!(
    /// What a leg is: how the call core reaches the party on it. Every kind reports ringing,
    /// early media, answer, failure and end the same way (ARCHITECTURE.md, "Leg kinds").
    LegKind {
        /// A SIP dialog (a phone, a trunk).
        Sip = "sip",
        /// The server itself answering (the IVR).
        Local = "local",
        /// A conference room.
        Conference = "conference",
        /// A queue holding the caller until an agent takes it.
        Queue = "queue",
        /// A browser over WebRTC.
        Webrtc = "webrtc",
    }
);

/// An extension: the number a user (a phone, an agent) is reached at, as the registrar, the
/// calls and the API name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Extension(String);

impl Extension {
    pub fn new(ext: impl Into<String>) -> Extension {
        Extension(ext.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a call ended, as call records and `call.ended` name it. The causes a dialplan or the
/// API may ask for (`hangup = "busy"`, `DELETE /v1/calls/{id}?cause=`) are
/// [`Normal`](Self::Normal), [`Busy`](Self::Busy), [`Rejected`](Self::Rejected),
/// [`Unavailable`](Self::Unavailable) and [`NotFound`](Self::NotFound); the others are what
/// the server observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HangupCause {
    /// Someone hung up after the answer (or a flow ended the call normally).
    #[serde(rename = "normal_clearing")]
    Normal,
    /// The caller CANCELled before the answer.
    CallerCancel,
    /// The callee's search ended with 487 (its side cancelled).
    Cancelled,
    /// Nobody answered in time (ring or no-answer timeout, 408, 480).
    NoAnswer,
    /// The callee was busy (486, 600), or a flow answered busy.
    Busy,
    /// The callee declined (603).
    Declined,
    /// A flow or the API refused the call (603 sent by us).
    Rejected,
    /// Nobody could be reached (no registered phone, 480 sent by us).
    Unavailable,
    /// No such number or user (404, 410, 484, 604).
    NotFound,
    /// Any other failure of the callee side.
    Failed,
    /// The media could not be set up (no ports, no common codec, unusable SDP).
    MediaFailed,
    /// A request could not be delivered (transport error, Timer B/F): the other party is
    /// gone without a word.
    Unreachable,
    /// Our 2xx was never ACKed (RFC 3261 §13.3.1.4).
    AckTimeout,
    /// The server shut down.
    Shutdown,
    /// The call ended without a recorded reason (a bug if it shows).
    Unknown,
}

impl HangupCause {
    /// The name stored in call records and sent in `call.ended`.
    pub fn as_str(self) -> &'static str {
        match self {
            HangupCause::Normal => "normal_clearing",
            HangupCause::CallerCancel => "caller_cancel",
            HangupCause::Cancelled => "cancelled",
            HangupCause::NoAnswer => "no_answer",
            HangupCause::Busy => "busy",
            HangupCause::Declined => "declined",
            HangupCause::Rejected => "rejected",
            HangupCause::Unavailable => "unavailable",
            HangupCause::NotFound => "not_found",
            HangupCause::Failed => "failed",
            HangupCause::MediaFailed => "media_failed",
            HangupCause::Unreachable => "unreachable",
            HangupCause::AckTimeout => "ack_timeout",
            HangupCause::Shutdown => "shutdown",
            HangupCause::Unknown => "unknown",
        }
    }

    /// The final status an unanswered caller gets when the server ends its call for this
    /// cause.
    pub fn status(self) -> u16 {
        match self {
            HangupCause::Normal | HangupCause::Unavailable | HangupCause::NoAnswer => 480,
            HangupCause::Busy => 486,
            HangupCause::Rejected | HangupCause::Declined => 603,
            HangupCause::NotFound => 404,
            HangupCause::CallerCancel | HangupCause::Cancelled => 487,
            HangupCause::MediaFailed => 488,
            HangupCause::Unreachable => 408,
            HangupCause::AckTimeout => 408,
            HangupCause::Shutdown => 503,
            HangupCause::Failed | HangupCause::Unknown => 500,
        }
    }

    /// The cause a callee's final failure response stands for.
    pub fn from_failure(code: u16) -> HangupCause {
        match code {
            486 | 600 => HangupCause::Busy,
            487 => HangupCause::Cancelled,
            603 => HangupCause::Declined,
            408 | 480 => HangupCause::NoAnswer,
            404 | 410 | 484 | 604 => HangupCause::NotFound,
            _ => HangupCause::Failed,
        }
    }
}

impl std::fmt::Display for HangupCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `candidate` is a better final failure to report than `current` (RFC 3261 §16.7
/// step 6, as a B2BUA applies it to its forks): a 6xx beats everything (it also ends the
/// search, step 5); then busy (486: the party exists and is busy, what a caller most needs to
/// hear); then any other 4xx (the most specific class, §16.7), then 3xx, then 5xx; a 408 or a
/// 487 only when nothing better came (they say "no answer" or "we cancelled", not why).
/// Ties keep the first.
pub fn better_failure(current: Option<u16>, candidate: u16) -> bool {
    fn rank(code: u16) -> u8 {
        match code {
            600..=699 => 0,
            486 => 1,
            408 | 487 => 6,
            400..=499 => 2,
            300..=399 => 3,
            500..=599 => 4,
            _ => 7,
        }
    }
    current.is_none_or(|c| rank(candidate) < rank(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(codes: &[u16]) -> Option<u16> {
        codes.iter().fold(None, |best, &code| {
            if better_failure(best, code) {
                Some(code)
            } else {
                best
            }
        })
    }

    #[test]
    fn a_6xx_beats_every_other_failure() {
        assert_eq!(best(&[486, 404, 603, 500]), Some(603));
    }

    #[test]
    fn busy_beats_other_client_errors_whatever_the_order() {
        assert_eq!(best(&[404, 486]), Some(486));
        assert_eq!(best(&[486, 404]), Some(486));
    }

    #[test]
    fn a_cancelled_or_timed_out_fork_is_reported_only_when_nothing_better_came() {
        assert_eq!(best(&[487, 503]), Some(503));
        assert_eq!(best(&[408, 302]), Some(302));
        assert_eq!(best(&[487, 408]), Some(487));
    }

    #[test]
    fn client_errors_beat_server_errors() {
        assert_eq!(best(&[503, 404]), Some(404));
    }

    #[test]
    fn each_failure_status_has_one_cause() {
        assert_eq!(HangupCause::from_failure(487), HangupCause::Cancelled);
        assert_eq!(HangupCause::from_failure(600), HangupCause::Busy);
        assert_eq!(HangupCause::from_failure(603), HangupCause::Declined);
        assert_eq!(HangupCause::from_failure(480), HangupCause::NoAnswer);
        assert_eq!(HangupCause::from_failure(404), HangupCause::NotFound);
        assert_eq!(HangupCause::from_failure(502), HangupCause::Failed);
    }

    #[test]
    fn causes_serialise_as_their_record_names() {
        for cause in [
            HangupCause::Normal,
            HangupCause::CallerCancel,
            HangupCause::NotFound,
        ] {
            let json = serde_json::to_value(cause).expect("serialises");
            assert_eq!(json, serde_json::Value::String(cause.as_str().into()));
        }
    }
}
