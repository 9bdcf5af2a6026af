//! Kubernetes `Status` errors and the crate's start-up [`Error`].

use axum::http::StatusCode;
use serde_json::{Value, json};

/// Start-up / configuration errors of the emulator (never returned over HTTP).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file or binding the socket failed.
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    /// A CRD manifest could not be parsed.
    #[error("invalid YAML in {path}: {message}")]
    Yaml {
        /// File that failed to parse.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A CRD object was rejected.
    #[error("invalid CustomResourceDefinition: {0}")]
    InvalidCrd(String),
    /// The throwaway TLS CA or serving certificate could not be made.
    #[error("TLS setup: {what}")]
    Tls {
        /// The step that failed.
        what: &'static str,
        /// rcgen's or rustls' error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An object of [`crate::Config::objects`] was rejected.
    #[error("invalid start-up object: {0}")]
    InvalidObject(String),
}

/// An API error, rendered as a `meta/v1 Status` object with the matching HTTP code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// Identifies the object an error is about (`details` of the Status).
#[derive(Debug, Clone, Default)]
pub struct Target<'a> {
    pub group: &'a str,
    /// Plural resource name (real servers put the resource in `details.kind`).
    pub resource: &'a str,
    pub name: &'a str,
}

impl Target<'_> {
    /// `tenants.tenantdb.io` / `secrets` qualified resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self) -> Value {
        let mut d = json!({ "name": self.name, "kind": self.resource });
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(t: &Target<'_>) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", t.qualified(), t.name),
        );
        e.details = Some(t.details());
        e
    }

    pub fn not_found_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(t: &Target<'_>) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", t.qualified(), t.name),
        );
        e.details = Some(t.details());
        e
    }

    pub fn conflict(t: &Target<'_>, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                t.qualified(),
                t.name,
                why
            ),
        );
        e.details = Some(t.details());
        e
    }

    pub fn stale(t: &Target<'_>) -> Self {
        Self::conflict(
            t,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with field causes. `kind_group` is e.g. `Tenant.tenantdb.io`.
    pub fn invalid(kind_group: &str, name: &str, t: &Target<'_>, causes: &[FieldError]) -> Self {
        // Field order, not map iteration order: serde_json's map order depends on whether some
        // crate in the build enables `preserve_order` (feature unification), so sort explicitly.
        let mut causes: Vec<&FieldError> = causes.iter().collect();
        causes.sort_by(|a, b| a.field.cmp(&b.field));
        let rendered: Vec<String> = causes.iter().map(|c| c.render()).collect();
        let body = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let mut details = t.details();
        details["kind"] = json!(kind_group.split('.').next().unwrap_or(kind_group));
        details["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| json!({ "reason": c.reason, "message": c.cause_message(), "field": c.field }))
                .collect(),
        );
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind_group} \"{name}\" is invalid: {body}"),
            details: Some(details),
        }
    }

    pub fn forbidden(t: &Target<'_>, why: &str) -> Self {
        let mut e = Self::new(
            403,
            "Forbidden",
            format!("{} \"{}\" is forbidden: {why}", t.qualified(), t.name),
        );
        e.details = Some(t.details());
        e
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
            ),
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `Status` JSON body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// One schema/field validation failure, rendered like apimachinery's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueInvalid`, `FieldValueTypeInvalid`,
    /// `FieldValueTooLong`, `FieldValueTooMany`, `FieldValueForbidden`.
    pub reason: &'static str,
    pub field: String,
    /// Rendered JSON of the bad value (if shown).
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: &str) -> Self {
        FieldError {
            reason: "FieldValueRequired",
            field: field.into(),
            value: None,
            detail: String::new(),
        }
    }
    pub fn invalid(field: &str, value: &Value, detail: impl Into<String>) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            value: Some(render_value(value)),
            detail: detail.into(),
        }
    }
    pub fn type_invalid(field: &str, value: &Value, detail: impl Into<String>) -> Self {
        FieldError {
            reason: "FieldValueTypeInvalid",
            field: field.into(),
            value: Some(render_value(value)),
            detail: detail.into(),
        }
    }
    pub fn not_supported(field: &str, value: &Value, allowed: &[Value]) -> Self {
        let allowed: Vec<String> = allowed.iter().map(render_value).collect();
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.into(),
            value: Some(render_value(value)),
            detail: format!("supported values: {}", allowed.join(", ")),
        }
    }
    pub fn too_long(field: &str, max: u64) -> Self {
        FieldError {
            reason: "FieldValueTooLong",
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }
    pub fn too_many(field: &str, actual: usize, max: u64) -> Self {
        FieldError {
            reason: "FieldValueTooMany",
            field: field.into(),
            value: Some(actual.to_string()),
            detail: format!("must have at most {max} items"),
        }
    }
    pub fn forbidden(field: &str, detail: impl Into<String>) -> Self {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    fn type_word(&self) -> &'static str {
        match self.reason {
            "FieldValueRequired" => "Required value",
            "FieldValueNotSupported" => "Unsupported value",
            "FieldValueTypeInvalid" => "Invalid value",
            "FieldValueTooLong" => "Too long",
            "FieldValueTooMany" => "Too many",
            "FieldValueForbidden" => "Forbidden",
            "FieldValueDuplicate" => "Duplicate value",
            _ => "Invalid value",
        }
    }

    /// `Unsupported value: "foo": supported values: "a", "b"` (no field prefix).
    pub fn cause_message(&self) -> String {
        let mut s = self.type_word().to_string();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `spec.x: Unsupported value: ...`
    pub fn render(&self) -> String {
        if self.field.is_empty() {
            self.cause_message()
        } else {
            format!("{}: {}", self.field, self.cause_message())
        }
    }
}

/// Values in messages are shown the way Go's `%#v`-ish rendering does for JSON: strings quoted,
/// numbers bare, objects as JSON.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}
