//! Where an allowed call goes: a [`FaceBackend`] (the built-in engine of the `latch-engine`
//! crate, or an [`Upstream`] Face service: a real Azure Face resource, or any server with the
//! same API), or nowhere, said clearly.
//!
//! The proxy forwards the method, path and query (without `subscription-key`) and the headers
//! except the hop-by-hop ones and the caller's credentials: the caller's key or bearer token
//! never leaves, the upstream's own key is put in their place, and the `LimitedAccessToken`
//! header is dropped unless `forward_limited_access_token` is set. Bodies stream both ways
//! (a JSON body goes on as the bytes that were parsed). No answer within the timeout is a 504;
//! a connection failure a 502.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Request, Uri};
use axum::response::{IntoResponse, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use latch_http::{LIMITED_ACCESS_TOKEN_HEADER, SUBSCRIPTION_KEY_HEADER, SUBSCRIPTION_KEY_PARAM};
use zeroize::Zeroizing;

use crate::error::FaceError;
use crate::limited_access::VerifiedFaceCall;
use crate::routes::FaceCall;

/// How to reach the upstream.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// `http(s)://host[:port][/base]`; the call's path is appended.
    pub url: String,
    /// The upstream's own subscription key, if it needs one.
    pub key: Option<Zeroizing<String>>,
    /// How long to wait for the upstream's answer.
    pub timeout: Duration,
    /// Whether to pass the caller's `LimitedAccessToken` header on.
    pub forward_limited_access_token: bool,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field(
                "forward_limited_access_token",
                &self.forward_limited_access_token,
            )
            .finish()
    }
}

/// What runs the calls the checks allowed.
pub trait FaceBackend: Send + Sync {
    /// Runs an allowed call; the answer, refusals included.
    fn call<'a>(
        &'a self,
        call: &'a VerifiedFaceCall,
        face_call: FaceCall,
    ) -> Pin<Box<dyn Future<Output = Response> + Send + 'a>>;
}

/// The backend of the front.
pub enum Backend {
    /// Run the operations with this backend.
    Configured(Arc<dyn FaceBackend>),
    /// None configured: every allowed call is answered with 501 and a message saying so.
    Unconfigured,
}

/// The upstream proxy.
pub struct Upstream {
    base: Uri,
    key: Option<HeaderValue>,
    timeout: Duration,
    forward_lat: bool,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

/// A bad upstream URL or key.
#[derive(Debug)]
pub struct UpstreamError(pub String);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Upstream {
    /// A proxy to `config.url`.
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let base: Uri = config.url.trim_end_matches('/').parse().map_err(|_| {
            UpstreamError(format!("face.upstream_url '{}' is not a URL", config.url))
        })?;
        if !matches!(base.scheme_str(), Some("http") | Some("https"))
            || base.authority().is_none()
            || base.authority().is_some_and(|a| a.as_str().contains('@'))
            || base.query().is_some()
        {
            return Err(UpstreamError(format!(
                "face.upstream_url '{}' must be http(s)://host[:port][/path]",
                config.url
            )));
        }
        let key = match &config.key {
            None => None,
            Some(k) => {
                let mut v = HeaderValue::from_str(k).map_err(|_| {
                    UpstreamError("face.upstream_key is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(latch_tls::roots::client_config())
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Upstream {
            base,
            key,
            timeout: config.timeout,
            forward_lat: config.forward_limited_access_token,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The upstream URI: the base, the call's path, and its query as sent, byte for byte,
    /// less any `subscription-key` parameter.
    fn target(&self, uri: &Uri) -> Result<Uri, FaceError> {
        let kept: Vec<&str> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|segment| !segment.is_empty())
            .filter(|segment| {
                let name = segment.split('=').next().unwrap_or("");
                let decoded: String = form_urlencoded::parse(name.as_bytes())
                    .map(|(k, _)| k.into_owned())
                    .collect();
                decoded != SUBSCRIPTION_KEY_PARAM
            })
            .collect();
        let mut target = format!(
            "{}{}",
            self.base.to_string().trim_end_matches('/'),
            uri.path()
        );
        if !kept.is_empty() {
            target.push('?');
            target.push_str(&kept.join("&"));
        }
        target.parse().map_err(|_| FaceError::BadGateway)
    }

    async fn forward(&self, req: Request<Body>) -> Result<Response, FaceError> {
        let (parts, body) = req.into_parts();
        let mut out = Request::builder()
            .method(parts.method.clone())
            .uri(self.target(&parts.uri)?);
        let headers = out.headers_mut().ok_or(FaceError::BadGateway)?;
        copy_headers(&parts.headers, headers);
        headers.remove(SUBSCRIPTION_KEY_HEADER);
        headers.remove(header::AUTHORIZATION);
        if !self.forward_lat {
            headers.remove(LIMITED_ACCESS_TOKEN_HEADER);
        }
        if let Some(key) = &self.key {
            headers.insert(SUBSCRIPTION_KEY_HEADER, key.clone());
        }
        let request = out.body(body).map_err(|_| FaceError::BadGateway)?;
        let answer = match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => return Err(FaceError::Timeout),
            Ok(Err(e)) if over_limit(&e) => return Err(FaceError::TooLarge),
            Ok(Err(e)) => {
                tracing::warn!(target: "latch::face", error = %e, "upstream request failed");
                return Err(FaceError::BadGateway);
            }
            Ok(Ok(answer)) => answer,
        };
        let (parts, body) = answer.into_parts();
        let mut response = Response::new(Body::new(body));
        *response.status_mut() = parts.status;
        copy_headers(&parts.headers, response.headers_mut());
        Ok(response)
    }
}

impl Backend {
    /// Runs an allowed call.
    pub async fn call(&self, call: &VerifiedFaceCall, face_call: FaceCall) -> Response {
        match self {
            Backend::Configured(backend) => backend.call(call, face_call).await,
            Backend::Unconfigured => FaceError::NoBackend.into_response(),
        }
    }
}

impl FaceBackend for Upstream {
    fn call<'a>(
        &'a self,
        _: &'a VerifiedFaceCall,
        face_call: FaceCall,
    ) -> Pin<Box<dyn Future<Output = Response> + Send + 'a>> {
        // The request as it came, body bytes unchanged: the upstream reads it itself.
        let request = Request::from_parts(face_call.parts, face_call.body);
        Box::pin(async move {
            self.forward(request)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        })
    }
}

/// Whether a failed upstream request failed because our body limit cut the upload.
fn over_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and `host`, which the client sets for the upstream.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) && !named.contains(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Result<Upstream, UpstreamError> {
        Upstream::new(&UpstreamConfig {
            url: url.into(),
            key: Some(Zeroizing::new("upstream-key".into())),
            timeout: Duration::from_secs(1),
            forward_limited_access_token: false,
        })
    }

    #[test]
    fn targets_keep_the_path_and_drop_the_key_parameter() {
        let up = upstream("https://face.example/base/").unwrap();
        let uri: Uri = "/face/v1.0/detect?returnFaceId=true&subscription-key=SECRET&x=a%20b"
            .parse()
            .unwrap();
        let t = up.target(&uri).unwrap().to_string();
        assert_eq!(
            t,
            "https://face.example/base/face/v1.0/detect?returnFaceId=true&x=a%20b"
        );
        let uri: Uri = "/face/v1.0/detect?flag&subscription%2Dkey=S&a=%FF;b"
            .parse()
            .unwrap();
        assert_eq!(
            up.target(&uri).unwrap().to_string(),
            "https://face.example/base/face/v1.0/detect?flag&a=%FF;b"
        );
        let t = up
            .target(&"/face/v1.0/identify".parse().unwrap())
            .unwrap()
            .to_string();
        assert_eq!(t, "https://face.example/base/face/v1.0/identify");
    }

    #[test]
    fn bad_urls_are_refused_at_start() {
        for bad in [
            "ftp://x",
            "not a url",
            "/relative",
            "http://x/?q=1",
            "https://user:pass@face.example",
        ] {
            assert!(upstream(bad).is_err(), "{bad}");
        }
        assert!(!format!(
            "{:?}",
            UpstreamConfig {
                url: "u".into(),
                key: Some(Zeroizing::new("SECRET".into())),
                timeout: Duration::ZERO,
                forward_limited_access_token: false
            }
        )
        .contains("SECRET"));
    }

    #[test]
    fn hop_by_hop_headers_stay() {
        let mut from = HeaderMap::new();
        from.insert("connection", HeaderValue::from_static("close, x-private"));
        from.insert("x-private", HeaderValue::from_static("1"));
        from.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        from.insert("content-type", HeaderValue::from_static("application/json"));
        let mut to = HeaderMap::new();
        copy_headers(&from, &mut to);
        assert_eq!(to.len(), 1);
        assert!(to.contains_key("content-type"));
    }
}
