//! A middleware that decides from the request alone, before anything below it runs: answer
//! at once, or pass the request on unchanged (save what the check adds to its extensions).
//!
//! `axum::middleware::from_fn` runs an `async fn` with a `Next` that owns the layers below:
//! for every request it clones all of them (a deep copy down to the route, with a boxed
//! service at the bottom) and boxes the future. For a check that never awaits that is pure
//! overhead: the runtime-lag check, the key check and the rate limit as guards cost a
//! `/route` 10,400 fewer instructions of 170,000 (callgrind, `agent/examples/request_cost.rs`).
//! A [`Guard`] calls the service below in place.

use std::task::{Context, Poll};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use futures::{
    TryFutureExt,
    future::{Either, MapOk, Ready, ready},
};

use crate::api::AppState;

/// The check: `Some(response)` answers the request with it; `None` passes it on.
pub type Check = fn(&AppState, &mut Request) -> Option<Response>;

/// The layer of a [`Guard`].
#[derive(Clone)]
pub struct GuardLayer {
    state: AppState,
    check: Check,
}

impl GuardLayer {
    /// A guard running `check` with the agent's state.
    pub fn new(state: AppState, check: Check) -> Self {
        Self { state, check }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            state: self.state.clone(),
            check: self.check,
            inner,
        }
    }
}

/// Runs its check, then either answers or calls the service below.
#[derive(Clone)]
pub struct Guard<S> {
    state: AppState,
    check: Check,
    inner: S,
}

/// What a guard's answer has in common with the responses from below: the layers under
/// it may wrap the body (tracing does), and an answer made here has a plain one.
type Below<S> = MapOk<
    <S as tower::Service<Request>>::Future,
    fn(<S as tower::Service<Request>>::Response) -> Response,
>;

impl<S> tower::Service<Request> for Guard<S>
where
    S: tower::Service<Request>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, Below<S>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match (self.check)(&self.state, &mut request) {
            Some(answer) => Either::Left(ready(Ok(answer))),
            None => Either::Right(
                self.inner
                    .call(request)
                    .map_ok(IntoResponse::into_response as fn(S::Response) -> Response),
            ),
        }
    }
}
