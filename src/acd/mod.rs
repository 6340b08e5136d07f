//! Automatic contact distribution (issue 13): queues of waiting calls and chats and the agents
//! who serve them. So far the routing engine ([`engine`], SANS-IO); queues in the dialplan,
//! agents and their presence, the `queue` step, callbacks, monitoring and KPIs come next.

pub mod engine;
