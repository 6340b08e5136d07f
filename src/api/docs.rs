//! The API's description for people and tools: the standard error responses every operation
//! may give (added to the OpenAPI document in one place), the pretty JSON document and a
//! self-contained HTML reference rendered from it (no scripts, no CDN), as served at
//! `/v1/openapi.json` and `/v1/docs` and committed under `docs/` (`scripts/update-api-docs`).

use std::fmt::Write as _;
use std::sync::OnceLock;

use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, HeaderBuilder, OpenApi, Ref, ResponseBuilder};

use crate::store::Scope;

/// The document as served: pretty JSON and HTML.
#[derive(Debug)]
pub struct Generated {
    pub json: String,
    pub html: String,
}

/// The API's own document, generated once per process.
pub fn generated() -> &'static Generated {
    static DOC: OnceLock<Generated> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = super::openapi();
        Generated {
            json: json(&doc),
            html: html(&doc),
        }
    })
}

/// The document as pretty JSON with a final newline (what `docs/openapi.json` holds).
pub fn json(doc: &OpenApi) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_default();
    text.push('\n');
    text
}

/// The scope an operation declares in its `api_key` security requirement (the highest, if it
/// names several); None when it declares none.
pub fn operation_scope(op: &Operation) -> Option<Scope> {
    let security = serde_json::to_value(op.security.as_ref()?).ok()?;
    security
        .as_array()?
        .iter()
        .filter_map(|req| req.get("api_key")?.as_array().cloned())
        .flatten()
        .filter_map(|s| Scope::parse(s.as_str()?))
        .max()
}

/// Describes the events as a discriminated union on `type` (one schema per event type,
/// `<Type>Event`, collected in `EventData`), and the `Event` of the log as its envelope fields
/// together with one of them, so a client generated from the document gets one class per
/// event type. The union comes from [`crate::event::Event`], the enum the server emits.
pub fn add_event_schemas(doc: &mut OpenApi) {
    let union = <crate::event::Event as utoipa::PartialSchema>::schema();
    let Ok(union) = serde_json::to_value(union) else {
        return;
    };
    let components = doc.components.get_or_insert_with(Default::default);
    let mut parts = Vec::new();
    <crate::event::Event as utoipa::ToSchema>::schemas(&mut parts);
    components.schemas.extend(parts);
    let mut refs = Vec::new();
    let mut mapping = serde_json::Map::new();
    for variant in union["oneOf"].as_array().into_iter().flatten() {
        let Some(kind) = variant["properties"]["type"]["enum"][0].as_str() else {
            continue;
        };
        let name = format!("{}Event", camel(kind));
        let target = format!("#/components/schemas/{name}");
        if let Ok(schema) = serde_json::from_value(variant.clone()) {
            components.schemas.insert(name, schema);
        }
        refs.push(serde_json::json!({ "$ref": target }));
        mapping.insert(kind.to_owned(), Value::String(target));
    }
    let data = serde_json::json!({
        "description": "An event's `type` and its `data`: one schema per type.",
        "oneOf": refs,
        "discriminator": { "propertyName": "type", "mapping": mapping },
    });
    if let Ok(schema) = serde_json::from_value(data) {
        components.schemas.insert("EventData".to_owned(), schema);
    }
    if let Some(envelope) = components.schemas.remove("Event") {
        let typed = utoipa::openapi::schema::AllOfBuilder::new()
            .description(Some(
                "One event of the log: its place, time, session and call, \
                 and its `type` with the `data` of that type.",
            ))
            .item(envelope)
            .item(Ref::from_schema_name("EventData"))
            .build();
        let typed = utoipa::openapi::schema::Schema::AllOf(typed);
        components
            .schemas
            .insert("Event".to_owned(), utoipa::openapi::RefOr::T(typed));
    }
}

/// `call.created` → `CallCreated`.
fn camel(kind: &str) -> String {
    kind.split(['.', '_'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Adds the problem responses the framework itself can give to every operation that does not
/// already describe them: 401 and 429 (a key is checked and rate-limited), 403 (scope above
/// `read`), 400 (a bad path or query), and 400/413/415/422 for a request body.
pub fn add_standard_responses(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            let scope = operation_scope(op);
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let has_body = op.request_body.is_some();
            let responses = &mut op.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem_response(status, description).into());
            };
            if scope.is_some() {
                add("401", "No key, or an unknown or revoked one");
                add("429", "The key is over its request rate (see Retry-After)");
            }
            if scope.is_some_and(|s| s > Scope::Read) {
                add("403", "The key's scope is too low for this operation");
            }
            if has_params {
                add("400", "A malformed path or query parameter");
            }
            if has_body {
                add("400", "A malformed request body");
                add("413", "The request body is over `http.max_body_bytes`");
                add("415", "The request body is not `application/json`");
                add("422", "The request body does not match the schema");
            }
        }
    }
}

fn problem_response(status: &str, description: &str) -> utoipa::openapi::Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    if status == "429" {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Integer),
                )
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    response.build()
}

/// A readable, self-contained HTML reference of `doc`: operations grouped by tag, each with its
/// scope, parameters, request body and responses, then every schema.
pub fn html(doc: &OpenApi) -> String {
    let doc = serde_json::to_value(doc).unwrap_or(Value::Null);
    let mut out = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{t}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
         <p class=\"version\">OpenAPI {o}, version {v}</p>\n<p>{d}</p>\n",
        t = esc(title),
        o = esc(doc["openapi"].as_str().unwrap_or("")),
        v = esc(doc["info"]["version"].as_str().unwrap_or("")),
        d = text(&doc["info"]["description"]),
    );

    // Operations, grouped by their first tag in the order the document lists its tags.
    let mut ops: Vec<(String, String, String, &Value)> = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ] {
                if let Some(op) = item.get(method) {
                    let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                    ops.push((tag, path.clone(), method.to_owned(), op));
                }
            }
        }
    }
    let mut tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| {
                    Some((
                        t["name"].as_str()?.to_owned(),
                        t["description"].as_str().unwrap_or("").to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    for (tag, ..) in &ops {
        if !tags.iter().any(|(t, _)| t == tag) {
            tags.push((tag.clone(), String::new()));
        }
    }
    tags.retain(|(t, _)| ops.iter().any(|(tag, ..)| tag == t));

    out.push_str("<nav>\n<h2>Contents</h2>\n<ul>\n");
    for (tag, _) in &tags {
        let _ = writeln!(out, "<li><a href=\"#tag-{0}\">{0}</a><ul>", esc(tag));
        for (_, path, method, _) in ops.iter().filter(|(t, ..)| t == tag) {
            let _ = writeln!(
                out,
                "<li><a href=\"#{}\"><code>{} {}</code></a></li>",
                anchor(method, path),
                method.to_uppercase(),
                esc(path)
            );
        }
        out.push_str("</ul></li>\n");
    }
    out.push_str("<li><a href=\"#schemas\">Schemas</a></li>\n</ul>\n</nav>\n");

    for (tag, description) in &tags {
        let _ = writeln!(
            out,
            "<section>\n<h2 id=\"tag-{0}\">{0}</h2>\n<p>{1}</p>",
            esc(tag),
            esc(description)
        );
        for (_, path, method, op) in ops.iter().filter(|(t, ..)| t == tag) {
            operation(&mut out, path, method, op);
        }
        out.push_str("</section>\n");
    }

    out.push_str("<section>\n<h2 id=\"schemas\">Schemas</h2>\n");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = writeln!(
                out,
                "<div class=\"schema\">\n<h3 id=\"schema-{0}\">{0}</h3>",
                esc(name)
            );
            schema_body(&mut out, schema);
            out.push_str("</div>\n");
        }
    }
    out.push_str("</section>\n</body>\n</html>\n");
    out
}

const STYLE: &str = "body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; color: #222; }
code { font-family: ui-monospace, monospace; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2.5rem; }
.op { border: 1px solid #ddd; border-radius: 6px; padding: 0 1rem 0.5rem; margin: 1.5rem 0; }
.op h3 code { font-size: 1.05rem; }
.method { display: inline-block; min-width: 4.5rem; font-weight: bold; }
.scope { background: #eef; border-radius: 4px; padding: 0 0.4rem; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
.version { color: #666; }
";

/// One operation: summary, scope, parameters, body, responses.
fn operation(out: &mut String, path: &str, method: &str, op: &Value) {
    let _ = writeln!(
        out,
        "<div class=\"op\">\n<h3 id=\"{}\"><code><span class=\"method\">{}</span> {}</code></h3>",
        anchor(method, path),
        method.to_uppercase(),
        esc(path)
    );
    let summary = text(&op["summary"]);
    if !summary.is_empty() {
        let _ = writeln!(out, "<p><strong>{summary}</strong></p>");
    }
    let description = text(&op["description"]);
    if !description.is_empty() {
        let _ = writeln!(out, "<p>{description}</p>");
    }
    let scopes: Vec<String> = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_object())
        .flat_map(|r| r.iter())
        .flat_map(|(scheme, scopes)| {
            scopes
                .as_array()
                .into_iter()
                .flatten()
                .map(move |s| format!("{} ({})", s.as_str().unwrap_or(""), scheme))
        })
        .collect();
    let _ = writeln!(
        out,
        "<p>Needs scope: <span class=\"scope\">{}</span></p>",
        if scopes.is_empty() {
            "none".to_owned()
        } else {
            esc(&scopes.join(", "))
        }
    );
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("<h4>Parameters</h4>\n<table>\n<tr><th>Name</th><th>In</th><th>Type</th><th>Required</th><th>Description</th></tr>\n");
        for p in params {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["in"].as_str().unwrap_or("")),
                type_of(&p["schema"]),
                if p["required"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                },
                text(&p["description"]),
            );
        }
        out.push_str("</table>\n");
    }
    let body = &op["requestBody"];
    if body.is_object() {
        out.push_str("<h4>Request body</h4>\n");
        let description = text(&body["description"]);
        if !description.is_empty() {
            let _ = writeln!(out, "<p>{description}</p>");
        }
        content(out, &body["content"]);
    }
    if let Some(responses) = op["responses"].as_object() {
        out.push_str("<h4>Responses</h4>\n<table>\n<tr><th>Status</th><th>Description</th><th>Body</th></tr>\n");
        for (status, r) in responses {
            let mut body = String::new();
            content(&mut body, &r["content"]);
            if let Some(headers) = r["headers"].as_object() {
                for (name, h) in headers {
                    let _ = write!(
                        body,
                        "<p>Header <code>{}</code>: {}</p>",
                        esc(name),
                        text(&h["description"])
                    );
                }
            }
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(status),
                text(&r["description"]),
                body
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</div>\n");
}

/// A `content` map: each media type with its schema.
fn content(out: &mut String, content: &Value) {
    if let Some(map) = content.as_object() {
        for (media, c) in map {
            let _ = write!(out, "<p><code>{}</code>", esc(media));
            if !c["schema"].is_null() {
                let _ = write!(out, ": {}", type_of(&c["schema"]));
            }
            out.push_str("</p>");
            if let Some(props) = c["schema"]["properties"].as_object() {
                properties(out, props, &c["schema"]["required"]);
            }
        }
    }
}

/// A named schema: its description, then its properties, variants or values.
fn schema_body(out: &mut String, schema: &Value) {
    let description = text(&schema["description"]);
    if !description.is_empty() {
        let _ = writeln!(out, "<p>{description}</p>");
    }
    let _ = writeln!(out, "<p>Type: {}</p>", type_of(schema));
    if let Some(props) = schema["properties"].as_object() {
        properties(out, props, &schema["required"]);
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        for part in schema[combinator].as_array().into_iter().flatten() {
            if let Some(props) = part["properties"].as_object() {
                let _ = writeln!(out, "<p>{combinator} part:</p>");
                properties(out, props, &part["required"]);
            }
        }
    }
}

/// A table of object properties.
fn properties(out: &mut String, props: &serde_json::Map<String, Value>, required: &Value) {
    let required: Vec<&str> = required
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    out.push_str(
        "<table>\n<tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>\n",
    );
    for (name, p) in props {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            type_of(p),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                "no"
            },
            text(&p["description"]),
        );
    }
    out.push_str("</table>\n");
}

/// A short, readable type: `string (uuid)`, `array of <a>Call</a>`, `"read" | "admin"`, …
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| esc(&v.to_string())).collect();
        return format!("<code>{}</code>", values.join(" | "));
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema[combinator].as_array() {
            let sep = if combinator == "allOf" {
                " and "
            } else {
                " or "
            };
            let parts: Vec<String> = parts.iter().map(type_of).collect();
            return parts.join(sep);
        }
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let mut shown: Vec<String> = types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!("array of {}", type_of(&schema["items"])),
            other => esc(other),
        })
        .collect();
    if shown.is_empty() {
        shown.push("any".into());
    }
    let mut s = shown.join(" or ");
    if let Some(format) = schema["format"].as_str() {
        let _ = write!(s, " ({})", esc(format));
    }
    s
}

fn anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("op-{method}{slug}")
}

/// A description as HTML: escaped, with `code` spans kept.
fn text(v: &Value) -> String {
    let s = esc(v.as_str().unwrap_or(""));
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_read_as_words_and_links() {
        let t = |v: Value| type_of(&v);
        assert_eq!(
            t(serde_json::json!({"type": "string", "format": "uuid"})),
            "string (uuid)"
        );
        assert_eq!(
            t(serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/Call"}})),
            "array of <a href=\"#schema-Call\">Call</a>"
        );
        assert_eq!(
            t(serde_json::json!({"type": ["integer", "null"]})),
            "integer or null"
        );
        assert_eq!(
            t(serde_json::json!({"enum": ["read", "admin"]})),
            "<code>&quot;read&quot; | &quot;admin&quot;</code>"
        );
    }

    #[test]
    fn descriptions_are_escaped_and_keep_code_spans() {
        assert_eq!(
            text(&Value::from("use `<key>` & go")),
            "use <code>&lt;key&gt;</code> &amp; go"
        );
    }
}
