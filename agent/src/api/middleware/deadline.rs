//! The request timeout as a plain service: the layers below are called in place, and a
//! request still unanswered when its time is up is answered 504 `Timeout` (JSON), its
//! future and the work it awaits dropped.
//!
//! tower's `TimeoutLayer` fails such a request with an error, which axum's
//! `HandleErrorLayer` turned into that answer; but `HandleErrorLayer` copies every layer
//! below it for each request (a boxed route service among them) and boxes the future it
//! makes: 0.9k instructions of a two-point `/route` (docs/agent-benchmarks.md).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use edgeroute_protocol::osrm::ErrorCode;
use tokio::time::Sleep;

use crate::error::ApiError;

/// The layer of [`Deadline`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    limit: Duration,
}

impl DeadlineLayer {
    /// Requests get at most `limit` from the moment they reach this layer.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            limit: self.limit,
        }
    }
}

/// Bounds the time of every request; see the module documentation.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S> tower::Service<Request> for Deadline<S>
where
    S: tower::Service<Request>,
    // The panic catcher below answers with its own body type.
    S::Response: IntoResponse,
    // As in `metered.rs`: the layers below pin their futures already.
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Bounded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Bounded {
            // The clock starts now, as with tower's timeout.
            deadline: Instant::now() + self.limit,
            inner: self.inner.call(request),
            sleep: None,
        }
    }
}

/// A request's response on its way, with its deadline.
pub struct Bounded<F> {
    inner: F,
    deadline: Instant,
    /// Made when the response is first not ready: most answers are ready at the first poll
    /// (a short route is computed inline), and need no timer at all.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<F, R, E> Future for Bounded<F>
where
    F: Future<Output = Result<R, E>> + Unpin,
    R: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(result) = Pin::new(&mut this.inner).poll(cx) {
            return Poll::Ready(result.map(IntoResponse::into_response));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(ApiError::new(
                ErrorCode::Timeout,
                "The request took too long and was cancelled",
            )
            .into_response())),
            Poll::Pending => Poll::Pending,
        }
    }
}
