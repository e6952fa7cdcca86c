//! A tower layer for gRPC servers: a request that is not the protobuf
//! message its method takes is the caller's error, so it is answered
//! `INVALID_ARGUMENT`, not the `INTERNAL` tonic's codec gives every decode
//! failure (which is right for a client reading a server's answer, and so
//! stays there).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The layer; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct InvalidRequestLayer;

impl<S> tower::Layer<S> for InvalidRequestLayer {
    type Service = InvalidRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InvalidRequest { inner }
    }
}

/// The service the layer wraps.
#[derive(Clone, Debug)]
pub struct InvalidRequest<S> {
    inner: S,
}

/// The message prost's decode errors start with, percent-encoded as in a
/// `grpc-message` header.
const DECODE_PREFIX: &[u8] = b"failed%20to%20decode%20Protobuf%20message";

/// Rewrites a trailers-only decode failure's status to `INVALID_ARGUMENT`.
pub fn rewrite(headers: &mut http::HeaderMap) {
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    let decode = headers
        .get("grpc-message")
        .is_some_and(|v| v.as_bytes().starts_with(DECODE_PREFIX));
    if internal && decode {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for InvalidRequest<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            rewrite(resp.headers_mut());
            Ok(resp)
        })
    }
}

/// Both versions of the standard reflection service (`grpc.reflection.v1`,
/// and `v1alpha`, which many tools and Python's grpcio-reflection speak),
/// advertising only `services` (each found in one of `sets`, encoded file
/// descriptor sets) and reflection itself.
///
/// # Errors
/// A descriptor set that does not decode.
pub fn reflection(
    sets: &[&'static [u8]],
    services: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure();
        for s in sets {
            b = b.register_encoded_file_descriptor_set(s);
        }
        for name in services {
            b = b.with_service_name(*name);
        }
        b
    };
    let v1 = builder()
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    let v1alpha = builder()
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

/// The services a server advertises through reflection, asked with v1
/// and with v1alpha: `(v1 names, v1alpha names)`.
///
/// # Errors
/// The server's status when either version is not served.
pub async fn advertised_services(
    channel: tonic::transport::Channel,
) -> Result<(Vec<String>, Vec<String>), tonic::Status> {
    use tonic_reflection::pb::{v1, v1alpha};
    let mut a = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut s = a
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let v1_names = match s.message().await?.and_then(|r| r.message_response) {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => return Err(tonic::Status::internal(format!("v1 answered {other:?}"))),
    };
    let mut b = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut s = b
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let alpha_names = match s.message().await?.and_then(|r| r.message_response) {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => {
            return Err(tonic::Status::internal(format!(
                "v1alpha answered {other:?}"
            )))
        }
    };
    Ok((v1_names, alpha_names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decode_failures_change() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static("13"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("failed%20to%20decode%20Protobuf%20message:%20x"),
        );
        rewrite(&mut h);
        assert_eq!(h["grpc-status"], "3");
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static("13"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("worker%20failed"),
        );
        rewrite(&mut h);
        assert_eq!(h["grpc-status"], "13");
    }
}
