//! The value tree both front ends produce: TOML tables (with line:column from their spans) and a
//! webhook's JSON reply are both turned into [`Node`]s, so the decoder sees one shape.

use super::*;

/// A value and where it was written.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) v: Val,
    pub(super) at: Pos,
}

#[derive(Debug)]
pub(super) enum Val {
    Str(String),
    /// `None`: out of the range of i64.
    Int(Option<i64>),
    Float,
    Bool(bool),
    /// A TOML date-time: the local date when it is only a date.
    Datetime(Option<jiff::civil::Date>),
    Array(Vec<Node>),
    /// Entries in the order they were written.
    Table(Vec<Entry>),
    Null,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) at: Pos,
    pub(super) value: Node,
}

impl Val {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Float => "a float",
            Val::Bool(_) => "a boolean",
            Val::Datetime(_) => "a date-time",
            Val::Array(_) => "an array",
            Val::Table(_) => "a table",
            Val::Null => "null",
        }
    }
}

/// Byte offset → line and column (1-based, columns in characters).
pub(super) struct LineIndex<'a> {
    pub(super) text: &'a str,
    pub(super) starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    pub(super) fn pos(&self, file: &Path, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Pos {
            file: file.to_owned(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        }
    }
}

pub(super) fn file_pos(file: &Path) -> Pos {
    Pos {
        file: file.to_owned(),
        line: 1,
        col: 1,
    }
}

pub(super) fn toml_table(
    t: &toml::de::DeTable<'_>,
    lines: &LineIndex<'_>,
    file: &Path,
) -> Vec<Entry> {
    let mut entries: Vec<(usize, Entry)> = t
        .iter()
        .map(|(k, v)| {
            (
                k.span().start,
                Entry {
                    key: k.get_ref().to_string(),
                    at: lines.pos(file, k.span().start),
                    value: toml_node(v, lines, file),
                },
            )
        })
        .collect();
    entries.sort_by_key(|(start, _)| *start);
    entries.into_iter().map(|(_, e)| e).collect()
}

pub(super) fn toml_node(
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    lines: &LineIndex<'_>,
    file: &Path,
) -> Node {
    use toml::de::DeValue;
    let val = match v.get_ref() {
        DeValue::String(s) => Val::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            Val::Int(i64::from_str_radix(&digits, i.radix()).ok())
        }
        DeValue::Float(_) => Val::Float,
        DeValue::Boolean(b) => Val::Bool(*b),
        DeValue::Datetime(d) => Val::Datetime(match (d.date, d.time, d.offset) {
            (Some(date), None, None) => jiff::civil::Date::new(
                i16::try_from(date.year).unwrap_or(i16::MAX),
                i8::try_from(date.month).unwrap_or(0),
                i8::try_from(date.day).unwrap_or(0),
            )
            .ok(),
            _ => None,
        }),
        DeValue::Array(a) => Val::Array(a.iter().map(|v| toml_node(v, lines, file)).collect()),
        DeValue::Table(t) => Val::Table(toml_table(t, lines, file)),
    };
    Node {
        v: val,
        at: lines.pos(file, v.span().start),
    }
}

pub(super) fn json_node(v: &serde_json::Value) -> Node {
    use serde_json::Value;
    let val = match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(Some(i)),
            None if n.is_u64() => Val::Int(None),
            None => Val::Float,
        },
        Value::String(s) => Val::Str(s.clone()),
        Value::Array(a) => Val::Array(a.iter().map(json_node).collect()),
        Value::Object(o) => Val::Table(
            o.iter()
                .map(|(k, v)| Entry {
                    key: k.clone(),
                    at: Pos::default(),
                    value: json_node(v),
                })
                .collect(),
        ),
    };
    Node {
        v: val,
        at: Pos::default(),
    }
}
