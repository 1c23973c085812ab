//! Counts and times every call for [`Metrics`]: a tower layer outside the others, so calls
//! refused by the key check or the message-size limit are counted too.
//!
//! A call's status is known only at its end: in the response headers when the call failed
//! before any message ("trailers-only"), else in the trailers after the last message. So the
//! response body is wrapped, and the call is recorded when the trailers pass, or when the body
//! is dropped unfinished (the client went away: `Canceled`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use prost::Message;
use tonic::{Code, Status};

use crate::metrics::{Method, Metrics};
use crate::proto;

/// The `grpc_code` label of `code`, as go-grpc-prometheus spells it.
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Every method the server serves, by request path, read from the services' descriptors so
/// the table follows the protos. Built once per process; its few names live as long as it.
static METHODS: LazyLock<HashMap<String, Method>> = LazyLock::new(|| {
    let sets = [
        proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ];
    let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
    let mut methods = HashMap::new();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            tracing::error!("a service descriptor does not decode: its calls are counted as unknown");
            continue;
        };
        for file in set.file {
            for service in &file.service {
                let service_name = leak(format!("{}.{}", file.package(), service.name()));
                for method in &service.method {
                    let grpc_type = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (true, false) => "client_stream",
                        (false, true) => "server_stream",
                        (true, true) => "bidi_stream",
                    };
                    let path = format!("/{service_name}/{}", method.name());
                    let name = leak(method.name().to_string());
                    methods.insert(
                        path,
                        Method {
                            grpc_type,
                            grpc_service: service_name,
                            grpc_method: name,
                        },
                    );
                }
            }
        }
    }
    methods
});

fn method_of(path: &str) -> Method {
    METHODS.get(path).copied().unwrap_or(Method::UNKNOWN)
}

/// The layer; without metrics it passes calls through untouched.
#[derive(Clone)]
pub struct MeteredLayer {
    metrics: Option<Arc<Metrics>>,
}

impl MeteredLayer {
    pub fn new(metrics: Option<Arc<Metrics>>) -> MeteredLayer {
        MeteredLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MeteredLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Option<Arc<Metrics>>,
}

impl<S, B> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(metrics) = self.metrics.clone() else {
            return Box::pin(self.inner.call(request));
        };
        let method = method_of(request.uri().path());
        metrics.call_started(method);
        let call = Call {
            metrics,
            method,
            started: Instant::now(),
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                Err(error) => {
                    call.end(Code::Unknown);
                    return Err(error);
                }
            };
            let (parts, body) = response.into_parts();
            let code = parts
                .headers
                .get("grpc-status")
                .map(|value| Code::from_bytes(value.as_bytes()));
            let body = MeteredBody {
                inner: body,
                call: Some(call),
                code,
            };
            Ok(http::Response::from_parts(parts, tonic::body::Body::new(body)))
        })
    }
}

/// A call on its way, recorded once when it ends.
struct Call {
    metrics: Arc<Metrics>,
    method: Method,
    started: Instant,
}

impl Call {
    fn end(self, code: Code) {
        self.metrics
            .call_handled(self.method, code_label(code), self.started.elapsed());
    }
}

/// A response body that records its call when the status passes, or when it is dropped first.
struct MeteredBody {
    inner: tonic::body::Body,
    call: Option<Call>,
    /// The status in the response headers, for a call that failed before any message.
    code: Option<Code>,
}

impl MeteredBody {
    fn end(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.end(code);
        }
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame
                    .trailers_ref()
                    .and_then(|trailers| trailers.get("grpc-status"))
                {
                    self.end(Code::from_bytes(code.as_bytes()));
                }
            }
            Poll::Ready(Some(Err(status))) => self.end(status.code()),
            Poll::Ready(None) => {
                let code = self.code.unwrap_or(Code::Unknown);
                self.end(code);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // A trailers-only response may never be polled; any other body dropped before its
        // status is a call the client abandoned.
        let code = self.code.unwrap_or(Code::Cancelled);
        self.end(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_descriptors_and_unknown_paths_share_one_label() {
        let check = method_of("/hashsieve.v1.Matcher/CheckHashes");
        assert_eq!(
            (check.grpc_type, check.grpc_service, check.grpc_method),
            ("unary", "hashsieve.v1.Matcher", "CheckHashes")
        );
        assert_eq!(
            method_of("/hashsieve.v1.Banks/AddEntries").grpc_type,
            "client_stream"
        );
        assert_eq!(
            method_of("/hashsieve.v1.Banks/ExportEntries").grpc_type,
            "server_stream"
        );
        assert_eq!(
            method_of("/hashsieve.v1.Matcher/CheckStream").grpc_type,
            "bidi_stream"
        );
        assert_eq!(
            method_of("/grpc.health.v1.Health/Check").grpc_service,
            "grpc.health.v1.Health"
        );
        assert_eq!(
            method_of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").grpc_type,
            "bidi_stream"
        );
        assert_eq!(method_of("/hashsieve.v1.Matcher/Nope"), Method::UNKNOWN);
        assert_eq!(method_of("/../../etc/passwd"), Method::UNKNOWN);
    }

    #[test]
    fn status_values_are_named_as_go_grpc_prometheus_names_them() {
        let label = |header: &[u8]| code_label(Code::from_bytes(header));
        assert_eq!(label(b"0"), "OK");
        assert_eq!(label(b"1"), "Canceled");
        assert_eq!(label(b"5"), "NotFound");
        assert_eq!(label(b"8"), "ResourceExhausted");
        assert_eq!(label(b"16"), "Unauthenticated");
        assert_eq!(label(b"17"), "Unknown");
        assert_eq!(label(b"x"), "Unknown");
    }
}
