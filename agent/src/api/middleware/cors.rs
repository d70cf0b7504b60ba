//! tower-http's CORS layer, run only for requests a browser could have sent across origins:
//! those with an `Origin` header, and every `OPTIONS` (a preflight, or what the layer
//! answers as one).
//!
//! Without `Origin` the layer's headers mean nothing to the client (dispatch systems,
//! `curl`, other servers), yet it builds a header map of them for every request and copies
//! it into every response: 2k instructions of a two-point `/route`
//! (docs/agent-benchmarks.md). Caches stay correct without them: every response still says
//! `Vary: origin, ...` (`cors_vary` in the stack), so one cached for a request without
//! `Origin` is never served to a browser that sent one.

use std::task::{Context, Poll};

use axum::{
    extract::Request,
    http::{Method, Response, header},
};
use futures::future::Either;
use tower_http::cors::{Cors, CorsLayer, ResponseFuture};

/// The layer of [`BrowserCors`].
#[derive(Debug, Clone)]
pub struct BrowserCorsLayer(CorsLayer);

impl BrowserCorsLayer {
    /// `layer` for the requests that carry an `Origin`, and every `OPTIONS`.
    pub fn new(layer: CorsLayer) -> Self {
        Self(layer)
    }
}

impl<S> tower::Layer<S> for BrowserCorsLayer {
    type Service = BrowserCors<S>;

    fn layer(&self, inner: S) -> BrowserCors<S> {
        BrowserCors(tower::Layer::layer(&self.0, inner))
    }
}

/// Calls the service below through [`Cors`] or directly; see the module documentation.
#[derive(Debug, Clone)]
pub struct BrowserCors<S>(Cors<S>);

/// Whether a request goes through the CORS layer.
fn from_a_browser(request: &Request) -> bool {
    request.method() == Method::OPTIONS || request.headers().contains_key(header::ORIGIN)
}

impl<S, B> tower::Service<Request> for BrowserCors<S>
where
    S: tower::Service<Request, Response = Response<B>>,
    B: Default,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Either<ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if from_a_browser(&request) {
            Either::Left(self.0.call(request))
        } else {
            Either::Right(self.0.get_mut().call(request))
        }
    }
}
