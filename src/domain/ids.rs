//! Id newtypes for stored entities (DESIGN §6.1): UUIDv7, so ids sort by creation time and
//! index well. Stored as hyphenated lowercase TEXT.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh UUIDv7 id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

id_type!(
    /// One call (a call record; may have several legs).
    CallId
);
id_type!(
    /// One customer contact across channels (DESIGN §4).
    SessionId
);
id_type!(
    /// A customer, reached through one or more identities.
    CustomerId
);
id_type!(
    /// One SIP leg of a call.
    LegId
);
id_type!(
    /// An API key (its row; the key itself is never stored).
    ApiKeyId
);
id_type!(
    /// A webhook subscription.
    WebhookId
);
id_type!(
    /// One conversation on a text channel (web chat, a gateway).
    ConversationId
);
id_type!(
    /// One message of a conversation.
    MessageId
);
id_type!(
    /// A file sent in a conversation.
    AttachmentId
);
