//! The labels of the HTTP request metrics: route template, method and status.

use axum::{extract::MatchedPath, http::Method};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// Labels of the HTTP metrics. `endpoint` is the route template (`/route/v1/{profile}/...`),
/// never the raw path, and `method` one of [`method_label`]'s values, never the raw method:
/// the client chooses neither, so cardinality stays bounded.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route template, or `unmatched`.
    pub endpoint: Endpoint,
    /// HTTP method, from [`method_label`].
    pub method: &'static str,
    /// Response status code; [`CLIENT_CLOSED`] for a request whose client went away first.
    pub code: u16,
}

/// The `endpoint` label: a request's route template, shared with the request (axum's
/// [`MatchedPath`] is reference counted), so labelling a request copies no text. Each
/// request is looked up in two families; owned strings were three allocations per request.
#[derive(Debug, Clone)]
pub struct Endpoint(EndpointName);

#[derive(Debug, Clone)]
enum EndpointName {
    Matched(MatchedPath),
    Fixed(&'static str),
}

/// The endpoint of a request that matched no route, in metrics, logs and the sync window.
pub const UNMATCHED: &str = "unmatched";

/// The route template `request` matched, or [`UNMATCHED`], as text.
pub fn template<B>(request: &axum::http::Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
}

impl Endpoint {
    /// The label of a request that matched no route.
    pub const UNMATCHED: Self = Self(EndpointName::Fixed(UNMATCHED));

    /// The route template `request` matched, or [`Endpoint::UNMATCHED`].
    pub fn of<B>(request: &axum::http::Request<B>) -> Self {
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or(Self::UNMATCHED, |path| {
                Self(EndpointName::Matched(path.clone()))
            })
    }

    /// The label's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            EndpointName::Matched(path) => path.as_str(),
            EndpointName::Fixed(name) => name,
        }
    }
}

impl From<&'static str> for Endpoint {
    fn from(name: &'static str) -> Self {
        Self(EndpointName::Fixed(name))
    }
}

// By text: a template is the same label however it was made.
impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Endpoint {}

impl std::hash::Hash for Endpoint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The status label of a request cancelled before its response was ready (the client closed
/// the connection, or the server dropped it at the end of a shutdown grace). 499 is nginx's
/// "client closed request"; no response with it is ever sent.
pub const CLIENT_CLOSED: u16 = 499;

/// The `method` label of a request: a standard method by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}
