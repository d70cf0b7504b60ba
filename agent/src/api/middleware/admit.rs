//! Admission control as a plain service: a request that finds a free slot (the common case)
//! calls the service below in place and holds the slot until its response is ready; only a
//! request that must wait in the queue takes a copy of the layers below into a boxed
//! future, as `axum::middleware::from_fn` did for every request (see `guard.rs`).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};

use super::{bypasses_admission, shed};
use crate::api::{AppState, admission::Slot};

/// The layer of [`Admit`].
#[derive(Clone)]
pub struct AdmitLayer {
    state: AppState,
}

impl AdmitLayer {
    /// Admission through `state`'s request gate.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for AdmitLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            state: self.state.clone(),
            inner,
        }
    }
}

/// The slot gate: at most `--concurrency-limit` requests at work, `--admission-queue`
/// waiting at most `--admission-max-wait-ms`; 503 when the queue is full or the wait too
/// long.
#[derive(Clone)]
pub struct Admit<S> {
    state: AppState,
    inner: S,
}

type Queued<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S> tower::Service<Request> for Admit<S>
where
    S: tower::Service<Request> + Clone + Send + 'static,
    // The layers below wrap the body (compression does); answers here have a plain one.
    S::Response: IntoResponse,
    S::Future: Unpin + Send,
    S::Error: 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Admitted<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if bypasses_admission(&request) {
            return Admitted::Now {
                inner: self.inner.call(request),
                slot: None,
            };
        }
        if let Some(slot) = self.state.admission.requests.try_enter() {
            return Admitted::Now {
                inner: self.inner.call(request),
                slot: Some(slot),
            };
        }
        // The service made ready goes with the request; this layer keeps a copy.
        let copy = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, copy);
        let state = self.state.clone();
        Admitted::Queued(Box::pin(async move {
            match state.admission.requests.enter().await {
                Ok(slot) => {
                    let response = inner.call(request).await;
                    drop(slot);
                    response.map(IntoResponse::into_response)
                }
                Err(reason) => Ok(shed(&state, reason)),
            }
        }))
    }
}

/// The response of an admitted request, holding its slot until it is ready.
pub enum Admitted<F, E> {
    /// Admitted at once (or not subject to admission).
    Now {
        /// The response from below.
        inner: F,
        /// The slot, released when the response is ready.
        slot: Option<Slot>,
    },
    /// Waiting for a slot first.
    Queued(Queued<E>),
}

impl<F, R, E> Future for Admitted<F, E>
where
    F: Future<Output = Result<R, E>> + Unpin,
    R: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            Admitted::Now { inner, slot } => {
                let response = ready!(Pin::new(inner).poll(cx));
                slot.take();
                Poll::Ready(response.map(IntoResponse::into_response))
            }
            Admitted::Queued(queued) => queued.as_mut().poll(cx),
        }
    }
}
