//! The image of a call: the body itself (`application/octet-stream`), or `{"url": "..."}`
//! naming an image the engine downloads.
//!
//! Downloads go only to hosts the operator lists (`face.image_url_hosts`; none by default),
//! over http or https, without following redirects, within a time and size limit: a Face
//! endpoint that fetched any URL would let its callers reach whatever the server can reach.

use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Ctx;
use latch_face::body::{UrlRequest, MAX_JSON};
use latch_face::error::{FaceError, Refusal};

/// Azure's smallest image file.
pub const MIN_IMAGE_BYTES: usize = 1024;
/// Azure's largest image file.
pub const MAX_IMAGE_BYTES: usize = 6 * 1024 * 1024;

/// Which image URLs the engine may download.
#[derive(Clone, Debug)]
pub struct ImageUrlPolicy {
    /// Host names (`host` or `host:port`), matched exactly, ignoring case.
    pub hosts: Vec<String>,
    /// How long one download may take.
    pub timeout: Duration,
}

impl Default for ImageUrlPolicy {
    fn default() -> Self {
        ImageUrlPolicy {
            hosts: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl ImageUrlPolicy {
    /// Whether `uri` may be downloaded; why not, if not.
    pub fn check(&self, uri: &Uri) -> Result<(), &'static str> {
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return Err("only http and https URLs are downloaded");
        }
        let Some(authority) = uri.authority() else {
            return Err("the URL has no host");
        };
        if authority.as_str().contains('@') {
            return Err("URLs with credentials are not downloaded");
        }
        let host = authority.host().to_ascii_lowercase();
        let with_port = authority.as_str().to_ascii_lowercase();
        let allowed = self.hosts.iter().any(|h| {
            let h = h.to_ascii_lowercase();
            if h.contains(':') && !h.starts_with('[') || h.contains("]:") {
                h == with_port
            } else {
                h == host && authority.port().is_none()
            }
        });
        if allowed {
            Ok(())
        } else {
            Err("this service downloads images only from hosts its operator allows")
        }
    }
}

/// Reads images from bodies and allowed URLs.
pub(crate) struct ImageSource {
    policy: ImageUrlPolicy,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl ImageSource {
    pub(crate) fn new(policy: ImageUrlPolicy) -> ImageSource {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(latch_tls::roots::client_config())
            .https_or_http()
            .enable_http1()
            .build();
        ImageSource {
            policy,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The image bytes of a call.
    pub(crate) async fn read(&self, ctx: &Ctx, body: Body) -> Result<Bytes, FaceError> {
        let is_json = ctx
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json"));
        let bytes = if is_json {
            let raw = to_bytes(body, MAX_JSON)
                .await
                .map_err(|_| FaceError::TooLarge)?;
            self.download(&UrlRequest::parse(&raw)?.url).await?
        } else {
            to_bytes(body, MAX_IMAGE_BYTES)
                .await
                .map_err(|_| FaceError::TooLarge)?
        };
        if bytes.len() < MIN_IMAGE_BYTES {
            return Err(Refusal::ImageTooSmall(None).into());
        }
        Ok(bytes)
    }

    async fn download(&self, url: &str) -> Result<Bytes, FaceError> {
        let uri: Uri = url.parse().map_err(|_| Refusal::InvalidUrl("not a URL"))?;
        self.policy.check(&uri).map_err(Refusal::InvalidUrl)?;
        let failed = Refusal::DownloadFailed;
        let fetch = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|_| failed("An error occurred while sending the request.".into()))?;
            if !response.status().is_success() {
                return Err(failed(format!("status {}", response.status().as_u16())));
            }
            let body = Limited::new(response.into_body(), MAX_IMAGE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        // Azure's answer to a downloaded image over the limit (a request body
                        // over it is the front's 413).
                        Refusal::ImageTooBig(None)
                    } else {
                        failed("The response was cut short.".into())
                    }
                })?;
            Ok(body.to_bytes())
        };
        let bytes = tokio::time::timeout(self.policy.timeout, fetch)
            .await
            .map_err(|_| failed("The download took too long.".into()))??;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> ImageUrlPolicy {
        ImageUrlPolicy {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..ImageUrlPolicy::default()
        }
    }

    fn check(p: &ImageUrlPolicy, url: &str) -> bool {
        p.check(&url.parse().unwrap()).is_ok()
    }

    #[test]
    fn only_listed_hosts_and_ports_are_downloaded() {
        let p = policy(&["images.example.com", "127.0.0.1:8080"]);
        assert!(check(&p, "https://images.example.com/a.jpg"));
        assert!(check(&p, "http://IMAGES.example.com/a.jpg"));
        assert!(check(&p, "http://127.0.0.1:8080/a.jpg"));
        assert!(!check(&p, "https://images.example.com:444/a.jpg"));
        assert!(!check(&p, "http://127.0.0.1/a.jpg"));
        assert!(!check(&p, "http://127.0.0.1:8081/a.jpg"));
        assert!(!check(&p, "https://evil.example.com/a.jpg"));
        assert!(!check(&p, "https://images.example.com.evil.net/a.jpg"));
        assert!(!check(&p, "https://user:pw@images.example.com/a.jpg"));
        assert!(!check(&p, "ftp://images.example.com/a.jpg"));
        assert!(!check(&policy(&[]), "https://images.example.com/a.jpg"));
    }
}
