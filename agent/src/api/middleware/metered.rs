//! The metrics layer as a plain service: it starts a [`Recording`] when a request comes in
//! and completes it when the response is ready, around the service below called in place.
//! As an `axum::middleware::from_fn` it copied every layer below it per request (see
//! `guard.rs`).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{extract::Request, response::Response};

use super::Recording;
use crate::{
    api::AppState,
    metrics::{Endpoint, method_label},
};

/// The layer of [`Metered`].
#[derive(Clone)]
pub struct MeteredLayer {
    state: AppState,
}

impl MeteredLayer {
    /// Request metrics into `state`'s registry.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for MeteredLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            state: self.state.clone(),
            inner,
        }
    }
}

/// Counts and times every request by endpoint template, method and final status.
#[derive(Clone)]
pub struct Metered<S> {
    state: AppState,
    inner: S,
}

impl<S> tower::Service<Request> for Metered<S>
where
    S: tower::Service<Request, Response = Response>,
    // The layers below box or pin their futures already; requiring `Unpin` spares this
    // one a box of its own.
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let recording = Recording::start(
            self.state.clone(),
            Endpoint::of(&request),
            method_label(request.method()),
        );
        Recorded {
            inner: self.inner.call(request),
            recording: Some(recording),
        }
    }
}

/// A request's response on its way, and its recording. Dropped before the response is
/// ready (the client went away), the recording counts the request as such.
pub struct Recorded<F> {
    inner: F,
    recording: Option<Recording>,
}

impl<F, E> Future for Recorded<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(Pin::new(&mut self.inner).poll(cx));
        if let (Ok(response), Some(recording)) = (&result, self.recording.take()) {
            recording.answered(response);
        }
        Poll::Ready(result)
    }
}
