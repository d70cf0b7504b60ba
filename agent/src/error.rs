//! The HTTP error type: every failure becomes an OSRM-style JSON body with the right status.
//!
//! Internal errors are never described to the client: the response carries an
//! [`InternalError`] extension that the `log_errors` middleware logs with the request's span.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use edgeroute_protocol::osrm::{ErrorCode, ErrorResponse};

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    retry_after_s: Option<u64>,
    internal: Option<String>,
}

/// The error code a response carries (`NoRoute`, `OutboxFull`, ...), attached to it so the
/// metrics window can count answers by code without parsing bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub &'static str);

/// The detail of a 500, attached to the response for logging only.
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

/// The HTTP status of each code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidUrl
        | ErrorCode::InvalidService
        | ErrorCode::InvalidVersion
        | ErrorCode::InvalidOptions
        | ErrorCode::InvalidQuery
        | ErrorCode::InvalidValue
        | ErrorCode::NoSegment
        | ErrorCode::NoRoute
        | ErrorCode::TooBig
        | ErrorCode::NoTrips
        | ErrorCode::NotImplemented => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Overloaded | ErrorCode::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The code used when a lower layer (axum, tower-http) produced a bare error status.
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::TooManyRequests,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Overloaded,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        s if s.is_client_error() => ErrorCode::InvalidQuery,
        _ => ErrorCode::InternalError,
    }
}

impl ApiError {
    /// An error with an explicit code and a client-facing message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_s: None,
            internal: None,
        }
    }

    /// `InvalidUrl`.
    pub fn invalid_url(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidUrl, message)
    }

    /// `InvalidQuery`.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidQuery, message)
    }

    /// `InvalidValue`.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidValue, message)
    }

    /// `InvalidOptions`.
    pub fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidOptions, message)
    }

    /// `TooBig`.
    pub fn too_big(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooBig, message)
    }

    /// 503 before the first graph is loaded.
    pub fn not_ready() -> Self {
        Self::new(
            ErrorCode::NotReady,
            "No road graph is loaded yet; retry when /readyz is 200.",
        )
    }

    /// 503 `Overloaded` with `Retry-After: 1`: refused at once, worth retrying shortly.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            retry_after_s: Some(1),
            ..Self::new(ErrorCode::Overloaded, message)
        }
    }

    /// 429 with a `Retry-After` header.
    pub fn too_many_requests(retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                ErrorCode::TooManyRequests,
                "Rate limit exceeded for this API key.",
            )
        }
    }

    /// A 500 whose detail is logged, not sent.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self {
            internal: Some(err.to_string()),
            ..Self::new(ErrorCode::InternalError, "Internal server error.")
        }
    }

    /// A 500 from an error chain (`anyhow`-style alternate display).
    pub fn internal_chain(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut detail = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        Self::internal(detail)
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The client-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let body = ErrorResponse {
            code: self.code,
            message: self.message,
        };
        let mut response = (status, Json(body)).into_response();
        response
            .extensions_mut()
            .insert(ResponseCode(self.code.as_str()));
        if let Some(secs) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(detail) = self.internal {
            response.extensions_mut().insert(InternalError(detail));
        }
        if self.code == ErrorCode::Overloaded {
            // Shedding is counted and logged in summary (`OverloadMetrics::shed_for`); a
            // warning per refused request would add to the overload it answers.
            response
                .extensions_mut()
                .insert(crate::api::health::ExpectedStatus);
        }
        response
    }
}

/// Map engine errors onto OSRM codes. `index` is the coordinate involved, if any.
pub fn from_engine(err: edgeroute_engine::Error, index: Option<usize>) -> ApiError {
    use edgeroute_engine::Error as E;
    match err {
        E::InvalidCoordinate { .. } => ApiError::invalid_value("Invalid coordinate value."),
        E::NoSegment { .. } => ApiError::new(
            ErrorCode::NoSegment,
            match index {
                Some(i) => format!("Could not find a matching segment for coordinate {i}"),
                None => "Could not find a matching segment for the coordinate".to_owned(),
            },
        ),
        E::NoRoute => ApiError::new(ErrorCode::NoRoute, "Impossible route between points"),
        other => ApiError::internal_chain(&other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_refusals_are_not_logged_as_failures_but_other_5xx_are() {
        let shed = ApiError::overloaded("busy").into_response();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        assert!(
            shed.extensions()
                .get::<crate::api::health::ExpectedStatus>()
                .is_some()
        );
        let internal = ApiError::internal("disk on fire").into_response();
        assert!(
            internal
                .extensions()
                .get::<crate::api::health::ExpectedStatus>()
                .is_none()
        );
    }

    #[test]
    fn internal_errors_are_not_sent() {
        let response = ApiError::internal("sled: disk on fire").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let detail = response.extensions().get::<InternalError>().unwrap();
        assert!(detail.0.contains("disk on fire"));
    }

    #[test]
    fn rate_limit_sets_retry_after() {
        let response = ApiError::too_many_requests(3).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn osrm_codes_are_400() {
        for code in [ErrorCode::NoSegment, ErrorCode::NoRoute, ErrorCode::TooBig] {
            assert_eq!(status_of(code), StatusCode::BAD_REQUEST);
        }
        assert_eq!(
            code_for_status(StatusCode::METHOD_NOT_ALLOWED),
            ErrorCode::MethodNotAllowed
        );
    }
}
