//! Extractors whose rejections are problem JSON naming the offending field, and which refuse
//! control characters before anything reaches a service or the database (the rule is in
//! [`super::controls`]).
//!
//! The project rule: a malformed query or path parameter answers 400, a request body that is
//! well-formed but invalid answers 422; both name the field in `errors[]`.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, RawPathParamsRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::controls;
use super::error::{ApiError, FieldError};

/// JSON body. A wrong content type answers 415, an oversize body 413, malformed JSON 400; a
/// control character in any string (see [`super::controls`]) or a body of the wrong shape
/// answers 422 naming the JSON path (`lines[0].sku`, `note`).
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::BadRequest(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected `Content-Type: application/json`".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await?;
        // Parsed once as a tree so every string can be checked with its path before any
        // typed field exists; the typed parse below then runs on the same bytes, keeping
        // serde's own checks (duplicate fields, exact numbers) intact.
        let tree: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::BadRequest(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}"))
        })?;
        let mut errors = Vec::new();
        find_controls(&tree, &mut String::new(), &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut de)
            .map(Json)
            .map_err(|e| {
                let field = field_name(&e.path().to_string(), &e.inner().to_string());
                ApiError::field(field, e.inner().to_string())
            })
    }
}

/// `application/json` or any `application/*+json`, parameters (`; charset=utf-8`) ignored.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// Collects a field error for every string (value or key) of `v` holding a character free
/// text may not contain; `path` is the JSON path of `v` in the form serde reports it.
fn find_controls(v: &Value, path: &mut String, errors: &mut Vec<FieldError>) {
    match v {
        Value::String(s) => {
            if let Some(c) = controls::forbidden_in_text(s) {
                errors.push(FieldError::new(at(path), controls::text_message(c)));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                find_controls(item, path, errors);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&controls::printable_name(key));
                if let Some(c) = controls::forbidden_in_text(key) {
                    errors.push(FieldError::new(path.clone(), controls::text_message(c)));
                } else {
                    find_controls(item, path, errors);
                }
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The path of the whole body is `.`, as serde_path_to_error writes it.
fn at(path: &str) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        path.to_string()
    }
}

/// The field a deserialization error is about. Missing and unknown fields are reported by
/// serde at the enclosing object, so the field's name is taken from the message.
fn field_name(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| controls::printable_name(name));
    match (path, named) {
        (".", Some(name)) => name,
        (_, Some(name)) if !path.ends_with(&name) => format!("{path}.{name}"),
        _ => path.to_string(),
    }
}

/// Query string. A control character in any parameter (name or value), or a value that
/// does not parse, answers 400 naming the parameter.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        let errors: Vec<FieldError> = form_urlencoded::parse(raw.as_bytes())
            .filter_map(|(name, value)| {
                let c = controls::forbidden_in_value(&name)
                    .or_else(|| controls::forbidden_in_value(&value))?;
                Some(FieldError::new(
                    controls::printable_name(&name),
                    controls::value_message(c),
                ))
            })
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::InvalidParams(errors));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let message = e.inner().to_string();
                let field = field_name(&e.path().to_string(), &message);
                ApiError::param(field, format!("invalid query parameter: {message}"))
            })
    }
}

/// Path parameters. A control character (`%00` and the like) or a value that does not parse
/// answers 400 naming the parameter.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(raw_path_rejection)?;
        let names: Vec<String> = raw.iter().map(|(name, _)| name.to_string()).collect();
        let errors: Vec<FieldError> = raw
            .iter()
            .filter_map(|(name, value)| {
                let c = controls::forbidden_in_value(value)?;
                Some(FieldError::new(name, controls::value_message(c)))
            })
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::InvalidParams(errors));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                use axum::extract::path::ErrorKind;
                let field = match e.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    // A single parameter read as one value reports no key: it is that one.
                    _ if names.len() == 1 => names[0].clone(),
                    _ => "path".to_string(),
                };
                Err(ApiError::param(
                    field,
                    format!("invalid path parameter: {}", e.kind()),
                ))
            }
            // Only a route declared without parameters lands here: a programming error.
            Err(other) => Err(ApiError::Internal(anyhow::anyhow!(
                "path extraction: {}",
                other.body_text()
            ))),
        }
    }
}

fn raw_path_rejection(r: RawPathParamsRejection) -> ApiError {
    match r {
        RawPathParamsRejection::InvalidUtf8InPathParam(e) => {
            ApiError::param("path", format!("invalid path parameter: {}", e.body_text()))
        }
        other => ApiError::Internal(anyhow::anyhow!("path extraction: {}", other.body_text())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controls_of(body: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap();
        let mut errors = Vec::new();
        find_controls(&v, &mut String::new(), &mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn control_characters_are_named_by_json_path() {
        assert_eq!(
            controls_of(r#"{"note":"a\u0000","lines":[{"sku":"ok"},{"sku":"\u001b"}]}"#),
            ["lines[1].sku", "note"]
        );
        assert_eq!(
            controls_of(r#"{"text":"line one\r\n\tline two"}"#),
            Vec::<String>::new()
        );
        assert_eq!(controls_of(r#"{"a\u0000":1}"#), ["a\\u{0}"]);
        assert_eq!(controls_of(r#""\u0000""#), ["."]);
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        assert_eq!(
            field_name(".", "missing field `retailer_id`"),
            "retailer_id"
        );
        assert_eq!(
            field_name("lines[0]", "unknown field `skew`, expected one of `sku`"),
            "lines[0].skew"
        );
        assert_eq!(field_name("lines[1].qty", "invalid type"), "lines[1].qty");
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
