//! Request extractors whose failures are problem+json with field paths.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// A JSON body, deserialized with the path of any field that fails.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body must be JSON with Content-Type: application/json",
                ));
            }
            let bytes = bytes.await.map_err(payload_error)?;
            parse_json(&bytes).map(Json)
        })
    }
}

/// Deserializes JSON; syntax errors are 400, wrong fields 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            // A field error seen before the end of a body that is not JSON at
            // all: the syntax is the client's real mistake.
            if inner.classify() == serde_json::error::Category::Data
                && let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            {
                return Err(json_error(".", &syntax));
            }
            return Err(json_error(&path, &inner));
        }
    };
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => {
            let msg = err.to_string();
            // "missing field `x` at line 1 column 2": the path is the parent.
            let (field, code) = match msg
                .strip_prefix("missing field `")
                .and_then(|r| r.split_once('`'))
            {
                Some((name, _)) if path == "." => (name.to_owned(), "required"),
                Some((name, _)) => (format!("{path}.{name}"), "required"),
                None => (
                    if path == "." {
                        "body".to_owned()
                    } else {
                        path.to_owned()
                    },
                    "invalid",
                ),
            };
            let message = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            ApiError::validation(vec![FieldError::new(field, code, message)])
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {err}"),
        ),
    }
}

fn payload_error(e: actix_web::Error) -> ApiError {
    let too_large = e
        .as_error::<PayloadError>()
        .is_some_and(|p| matches!(p, PayloadError::Overflow))
        || e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE;
    if too_large {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request_body",
            format!("the request body could not be read: {e}"),
        )
    }
}

/// Maps actix's own extractor errors (path, query, its Json) to problems.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            match err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is too large",
                ),
                JsonPayloadError::ContentType => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body must be JSON with Content-Type: application/json",
                ),
                JsonPayloadError::Deserialize(e) => json_error(".", &e),
                other => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request_body",
                    other.to_string(),
                ),
            }
            .into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let QueryPayloadError::Deserialize(e) = &err else {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", err.to_string()).into();
        };
        ApiError::validation(vec![FieldError::new("query", "invalid", e.to_string())]).into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        let PathError::Deserialize(e) = &err else {
            return ApiError::not_found("resource").into();
        };
        // A malformed id names nothing that exists.
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such resource: {e}"),
        )
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        asset: domain::money::Asset,
        amount: domain::money::DecimalString,
        inner: Option<Inner>,
    }
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    struct Inner {
        n: u8,
    }

    fn err(json: &str) -> crate::error::Problem {
        parse_json::<Body>(json.as_bytes()).unwrap_err().problem()
    }

    #[test]
    fn names_the_failing_field() {
        let p = err(r#"{"asset":"XYZ","amount":"1"}"#);
        assert_eq!((p.status, p.errors[0].field.as_str()), (422, "asset"));
        let p = err(r#"{"asset":"BTC","amount":1.5}"#);
        assert_eq!(p.errors[0].field, "amount");
        assert!(
            p.errors[0].message.contains("string"),
            "{}",
            p.errors[0].message
        );
        let p = err(r#"{"asset":"BTC"}"#);
        assert_eq!(
            (p.errors[0].field.as_str(), p.errors[0].code.as_str()),
            ("amount", "required")
        );
        let p = err(r#"{"asset":"BTC","amount":"1","inner":{"n":300}}"#);
        assert_eq!(p.errors[0].field, "inner.n");
    }

    #[test]
    fn malformed_and_deeply_nested_json_is_400() {
        assert_eq!(err(r#"{"asset":"#).status, 400);
        assert_eq!(err("{} trailing").status, 400);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let p = parse_json::<serde_json::Value>(deep.as_bytes())
            .unwrap_err()
            .problem();
        assert_eq!(p.status, 400);
    }
}
