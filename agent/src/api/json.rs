//! [`Json`]: the OSRM services' response body, serialized into a buffer each thread reuses.
//!
//! `axum::Json` serializes into a `BytesMut` of 128 bytes through its `Writer`: a short
//! `/route` answer (about 440 bytes) grows it three times, and every piece serde writes
//! goes through a capacity check of its own. That was 10.5k instructions of a two-point
//! `/route` (callgrind, `agent/examples/request_cost.rs`). Here serde writes into a `Vec`
//! that stays allocated on the thread, and the body is one copy at its final size.

use std::cell::RefCell;

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::error::ApiError;

/// A JSON response body (`Content-Type: application/json`), as `axum::Json` answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let body = edgeroute_server::scratch::with(&BUFFER, 4096, |buffer| {
            serde_json::to_writer(&mut *buffer, &self.0)
                .map(|()| axum::body::Bytes::copy_from_slice(buffer))
        });
        match body {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(err) => {
                ApiError::internal(format_args!("serializing the response: {err}")).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::body::to_bytes;

    use super::*;

    async fn body(response: Response) -> (Response<()>, Vec<u8>) {
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        (Response::from_parts(parts, ()), bytes.to_vec())
    }

    #[tokio::test]
    async fn answers_as_axum_json() {
        let value = serde_json::json!({"code": "Ok", "routes": [{"distance": 2849.0}], "name": "Rua \"Sá\""});
        let (ours, our_body) = body(Json(&value).into_response()).await;
        let (axums, axum_body) = body(axum::Json(&value).into_response()).await;
        assert_eq!(ours.status(), axums.status());
        assert_eq!(
            ours.headers().get(header::CONTENT_TYPE),
            axums.headers().get(header::CONTENT_TYPE)
        );
        assert_eq!(our_body, axum_body);
    }

    #[tokio::test]
    async fn a_large_body_is_whole_and_the_next_small_one_is_not_polluted() {
        let large: Vec<u64> = (0..50_000).collect();
        let (_, first) = body(Json(&large).into_response()).await;
        assert_eq!(serde_json::from_slice::<Vec<u64>>(&first).unwrap(), large);
        let (_, second) = body(Json([1, 2]).into_response()).await;
        assert_eq!(second, b"[1,2]");
    }

    #[tokio::test]
    async fn a_value_serde_cannot_write_is_a_json_500() {
        // JSON object keys must be strings: a map keyed by a sequence is refused.
        let refused = BTreeMap::from([(vec![1u8], 1)]);
        let (parts, bytes) = body(Json(refused).into_response()).await;
        assert_eq!(parts.status(), 500);
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(error["code"], "InternalError", "{error}");
    }
}
