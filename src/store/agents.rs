//! Agents, their state history, and tasks (a call or chat in a queue) with the figures the
//! KPIs are computed from (issue 13). Agents are managed directly (CLI and admin API, like
//! users); state changes and tasks come through the writer (the ACD never awaits the
//! database).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError};

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRecord {
    pub id: String,
    /// Reached on every phone registered for this extension.
    pub extension: String,
    pub name: Option<String>,
    /// Skill name → level.
    pub skills: Vec<(String, u8)>,
    /// Calls at once.
    pub voice: u32,
    /// Chats at once.
    pub chat: u32,
    /// No chat offered while on a call.
    pub no_chat_on_call: bool,
    /// May monitor calls (listen, whisper, barge).
    pub supervisor: bool,
    /// What the agent chose last: `available`, `break` or `offline`.
    pub presence: String,
    pub reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A task (one contact in a queue) as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRecord {
    pub id: String,
    pub queue: String,
    pub media: String,
    pub session_id: Option<String>,
    pub call_id: Option<String>,
    pub conversation_id: Option<String>,
    pub priority: i32,
    pub joined_ms: i64,
    pub agent_id: Option<String>,
    pub answered_ms: Option<i64>,
    pub left_ms: Option<i64>,
    /// `answered`, `abandoned`, `callback`, `timeout`, `full` or `overflow`.
    pub outcome: Option<String>,
    pub ended_ms: Option<i64>,
    /// A chat: when its agent first wrote after taking it.
    pub first_reply_ms: Option<i64>,
}

/// A new task row.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub queue: String,
    pub media: String,
    pub session_id: Option<String>,
    pub call_id: Option<String>,
    pub conversation_id: Option<String>,
    pub priority: i32,
    pub joined_ms: i64,
}

/// One agent state row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateRecord {
    pub at_ms: i64,
    pub state: String,
    pub reason: Option<String>,
}

/// Historical figures of a queue (or of an agent's tasks) over a time range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TaskStats {
    /// Contacts that joined in the range.
    pub contacts: u64,
    pub answered: u64,
    /// Answered within the queue's service-level threshold.
    pub answered_in_threshold: u64,
    pub abandoned: u64,
    pub callbacks: u64,
    /// Left at the maximum wait or refused at the maximum length.
    pub timed_out: u64,
    /// Answered within the threshold ÷ contacts that answered or abandoned (percent; `None`
    /// when there are none).
    pub service_level_pct: Option<f64>,
    /// Average speed of answer (ms).
    pub avg_answer_ms: Option<f64>,
    /// Average handle time of the finished tasks (ms).
    pub avg_handle_ms: Option<f64>,
    /// Abandoned ÷ contacts (percent).
    pub abandon_rate_pct: Option<f64>,
    /// Chats: average time from the agent taking it to their first message (ms).
    pub avg_first_response_ms: Option<f64>,
}

impl TaskStats {
    /// The figures of `tasks`; `threshold_ms` is the service-level threshold.
    pub fn of(tasks: &[TaskRecord], threshold_ms: i64) -> TaskStats {
        let mut s = TaskStats {
            contacts: tasks.len() as u64,
            ..TaskStats::default()
        };
        let (mut answer_sum, mut handle_sum, mut handled) = (0i64, 0i64, 0u64);
        let (mut first_sum, mut firsts) = (0i64, 0u64);
        for t in tasks {
            let handle = t.answered_ms.zip(t.ended_ms).map(|(at, end)| end - at);
            match t.outcome.as_deref() {
                Some("answered") => {
                    s.answered += 1;
                    if let Some(at) = t.answered_ms {
                        let wait = at - t.joined_ms;
                        answer_sum += wait;
                        if wait <= threshold_ms {
                            s.answered_in_threshold += 1;
                        }
                        if let Some(first) = t.first_reply_ms {
                            first_sum += first - at;
                            firsts += 1;
                        }
                    }
                }
                Some("abandoned") => s.abandoned += 1,
                Some("callback") => s.callbacks += 1,
                Some("timeout") | Some("full") => s.timed_out += 1,
                _ => {}
            }
            if matches!(t.outcome.as_deref(), Some("answered" | "callback"))
                && let Some(h) = handle
            {
                handle_sum += h;
                handled += 1;
            }
        }
        let pct = |n: u64, d: u64| (d > 0).then(|| 100.0 * n as f64 / d as f64);
        let avg = |sum: i64, n: u64| (n > 0).then(|| sum as f64 / n as f64);
        s.service_level_pct = pct(s.answered_in_threshold, s.answered + s.abandoned);
        s.avg_answer_ms = avg(answer_sum, s.answered);
        s.avg_handle_ms = avg(handle_sum, handled);
        s.abandon_rate_pct = pct(s.abandoned, s.contacts);
        s.avg_first_response_ms = avg(first_sum, firsts);
        s
    }
}

fn agent_from_row(row: &AnyRow) -> Result<AgentRecord, StoreError> {
    let skills: String = row.try_get("skills")?;
    let skills: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&skills)
        .map_err(|e| StoreError::Corrupt {
            table: "agents",
            reason: format!("skills: {e}"),
        })?;
    let skills = skills
        .into_iter()
        .map(|(k, v)| (k, v.as_u64().unwrap_or(0).min(255) as u8))
        .collect();
    let voice: i64 = row.try_get("voice")?;
    let chat: i64 = row.try_get("chat")?;
    let no_chat: i64 = row.try_get("no_chat_on_call")?;
    let supervisor: i64 = row.try_get("supervisor")?;
    Ok(AgentRecord {
        id: row.try_get("id")?,
        extension: row.try_get("extension")?,
        name: row.try_get("name")?,
        skills,
        voice: voice.clamp(0, 1000) as u32,
        chat: chat.clamp(0, 1000) as u32,
        no_chat_on_call: no_chat != 0,
        supervisor: supervisor != 0,
        presence: row.try_get("presence")?,
        reason: row.try_get("reason")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn state_from_row(r: &AnyRow) -> Result<StateRecord, StoreError> {
    Ok(StateRecord {
        at_ms: r.try_get("at_ms")?,
        state: r.try_get("state")?,
        reason: r.try_get("reason")?,
    })
}

fn skills_json(skills: &[(String, u8)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = skills
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The columns [`agent_from_row`] reads (a macro: SQL text must be a literal).
macro_rules! agent_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, extension, name, skills, voice, chat, no_chat_on_call, supervisor,
                    presence, reason, created_ms, updated_ms FROM agents ",
            $rest
        )
    };
}

impl Store {
    /// Adds an agent; [`StoreError::AlreadyExists`] if the id is taken.
    pub async fn add_agent(&self, a: &AgentRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO agents (id, extension, name, skills, voice, chat, no_chat_on_call,
                                 supervisor, presence, reason, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&a.id)
        .bind(&a.extension)
        .bind(a.name.as_deref())
        .bind(skills_json(&a.skills))
        .bind(i64::from(a.voice))
        .bind(i64::from(a.chat))
        .bind(i64::from(a.no_chat_on_call))
        .bind(i64::from(a.supervisor))
        .bind(&a.presence)
        .bind(a.reason.as_deref())
        .bind(a.created_ms)
        .bind(a.updated_ms)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(a.id.clone()));
        }
        Ok(())
    }

    /// Replaces an agent's settings (not their presence); [`StoreError::NotFound`] if absent.
    pub async fn update_agent(&self, a: &AgentRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE agents SET extension = $1, name = $2, skills = $3, voice = $4, chat = $5,
                               no_chat_on_call = $6, supervisor = $7, updated_ms = $8
             WHERE id = $9",
        )
        .bind(&a.extension)
        .bind(a.name.as_deref())
        .bind(skills_json(&a.skills))
        .bind(i64::from(a.voice))
        .bind(i64::from(a.chat))
        .bind(i64::from(a.no_chat_on_call))
        .bind(i64::from(a.supervisor))
        .bind(a.updated_ms)
        .bind(&a.id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(a.id.clone()));
        }
        Ok(())
    }

    /// Removes an agent (their history stays); false if absent.
    pub async fn remove_agent(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = sqlx::query(agent_select!("ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    pub async fn get_agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query(agent_select!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// An agent's state changes in `[from_ms, to_ms)`, oldest first (at most `limit`).
    pub async fn agent_states(
        &self,
        id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<StateRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, state, reason FROM agent_states
             WHERE agent_id = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms LIMIT $4",
        )
        .bind(id)
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(state_from_row).collect()
    }

    /// The state an agent was in at `at_ms` (the last change before it).
    pub async fn agent_state_at(
        &self,
        id: &str,
        at_ms: i64,
    ) -> Result<Option<StateRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT at_ms, state, reason FROM agent_states
             WHERE agent_id = $1 AND at_ms < $2 ORDER BY at_ms DESC LIMIT 1",
        )
        .bind(id)
        .bind(at_ms)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(state_from_row).transpose()
    }

    /// Tasks that joined in `[from_ms, to_ms)`: of `queue`, or handled by `agent`.
    pub async fn tasks(
        &self,
        queue: Option<&str>,
        agent: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, queue, media, session_id, call_id, conversation_id, priority, joined_ms,
                    agent_id, answered_ms, left_ms, outcome, ended_ms,
                    (SELECT MIN(m.created_ms) FROM messages m
                     WHERE m.conversation_id = tasks.conversation_id
                       AND m.author_kind = 'agent' AND m.created_ms >= tasks.answered_ms)
                        AS first_reply_ms
             FROM tasks
             WHERE ($1 IS NULL OR queue = $1) AND ($2 IS NULL OR agent_id = $2)
               AND joined_ms >= $3 AND joined_ms < $4
             ORDER BY joined_ms",
        )
        .bind(queue)
        .bind(agent)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let priority: i64 = r.try_get("priority")?;
                Ok(TaskRecord {
                    id: r.try_get("id")?,
                    queue: r.try_get("queue")?,
                    media: r.try_get("media")?,
                    session_id: r.try_get("session_id")?,
                    call_id: r.try_get("call_id")?,
                    conversation_id: r.try_get("conversation_id")?,
                    priority: priority.clamp(-1000, 1000) as i32,
                    joined_ms: r.try_get("joined_ms")?,
                    agent_id: r.try_get("agent_id")?,
                    answered_ms: r.try_get("answered_ms")?,
                    left_ms: r.try_get("left_ms")?,
                    outcome: r.try_get("outcome")?,
                    ended_ms: r.try_get("ended_ms")?,
                    first_reply_ms: r.try_get("first_reply_ms")?,
                })
            })
            .collect()
    }
}

// ----- writer commands -----

pub(super) async fn state_changed(
    conn: &mut AnyConnection,
    agent_id: &str,
    state: &str,
    reason: Option<&str>,
    presence: Option<&str>,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO agent_states (agent_id, at_ms, state, reason) VALUES ($1, $2, $3, $4)",
    )
    .bind(agent_id)
    .bind(at_ms)
    .bind(state)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    if let Some(presence) = presence {
        sqlx::query("UPDATE agents SET presence = $1, reason = $2, updated_ms = $3 WHERE id = $4")
            .bind(presence)
            .bind(reason)
            .bind(at_ms)
            .bind(agent_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn task_joined(conn: &mut AnyConnection, t: &NewTask) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tasks (id, queue, media, session_id, call_id, conversation_id, priority,
                            joined_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&t.id)
    .bind(&t.queue)
    .bind(&t.media)
    .bind(t.session_id.as_deref())
    .bind(t.call_id.as_deref())
    .bind(t.conversation_id.as_deref())
    .bind(i64::from(t.priority))
    .bind(t.joined_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn task_answered(
    conn: &mut AnyConnection,
    id: &str,
    agent_id: &str,
    outcome: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET agent_id = $1, answered_ms = $2, left_ms = $2, outcome = $3
         WHERE id = $4",
    )
    .bind(agent_id)
    .bind(at_ms)
    .bind(outcome)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn task_left(
    conn: &mut AnyConnection,
    id: &str,
    outcome: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET left_ms = $1, outcome = $2, ended_ms = $1 WHERE id = $3 AND left_ms IS NULL",
    )
    .bind(at_ms)
    .bind(outcome)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn task_ended(
    conn: &mut AnyConnection,
    id: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tasks SET ended_ms = $1 WHERE id = $2 AND ended_ms IS NULL")
        .bind(at_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
