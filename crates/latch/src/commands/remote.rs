//! The admin API as a client: a request sent with `--server` and the credential given, and the
//! answer read back as the local store would have given it.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use latch_admin::AdminRequest;
use serde_json::Value;

use crate::cli::Global;
use crate::exit;
use crate::output::{self, CliError};

/// A TLS client configuration that trusts only the certificates in `path`.
fn client_config(path: &std::path::Path) -> Result<rustls::ClientConfig, CliError> {
    let bad = |e: latch_tls::TlsError| CliError::usage(format!("--cacert {}: {e}", path.display()));
    latch_tls::roots::client_config_with(latch_tls::roots::roots_from_pem_file(path).map_err(bad)?)
        .map_err(bad)
}

/// The admin API to send requests to, and the credential to send.
pub(crate) struct Remote {
    url: String,
    credential: (&'static str, String),
    /// Certificates to trust instead of the web PKI roots.
    cacert: Option<std::path::PathBuf>,
}

impl Remote {
    pub(crate) fn from_flags(g: &Global) -> Option<Result<Remote, CliError>> {
        let url = g.server.clone()?;
        let credential = match (&g.token, &g.key) {
            (Some(token), None) => ("authorization", format!("Bearer {}", token.0)),
            (None, Some(key)) => ("ocp-apim-subscription-key", key.0.clone()),
            _ => {
                return Some(Err(CliError::usage(
                    "with --server, give exactly one of --token and --key",
                )))
            }
        };
        let url = url.trim_end_matches('/').to_owned();
        if crate::tls::plain_http_to_another_host(&url) {
            eprintln!(
                "latch: WARNING: --server {url} is plain HTTP to another host: the credential crosses the network in the clear"
            );
        }
        Some(Ok(Remote {
            url,
            credential,
            cacert: g.cacert.clone(),
        }))
    }

    /// Streams `GET /admin/v1/audit/export` into `out`.
    pub(super) async fn export(
        &self,
        chain: Option<&str>,
        format: &str,
        out: &std::path::Path,
    ) -> Result<(), CliError> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("format", format);
        if let Some(chain) = chain {
            query.append_pair("chain", chain);
        }
        let (status, body) = self
            .exchange(
                hyper::Method::GET,
                &format!("audit/export?{}", query.finish()),
                None,
            )
            .await?;
        if status != 200 {
            return Err(self.failure(status, &body));
        }
        std::fs::write(out, &body).map_err(|e| {
            CliError::new(
                "Failed",
                format!("cannot write {}: {e}", out.display()),
                exit::FAILURE,
            )
        })?;
        output::line(&format!("latch: export written to {}", out.display()));
        Ok(())
    }

    pub(super) async fn send(&self, request: &AdminRequest) -> Result<Value, CliError> {
        let body = request.body().to_string();
        let (status, bytes) = self
            .exchange(hyper::Method::POST, &request.op(), Some(body))
            .await?;
        if status == 200 {
            return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        Err(self.failure(status, &bytes))
    }

    async fn exchange(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), CliError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &self.cacert {
            None => builder.with_webpki_roots(),
            Some(path) => builder.with_tls_config(client_config(path)?),
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let mut value = hyper::header::HeaderValue::from_str(&self.credential.1)
            .map_err(|_| CliError::usage("the credential is not a valid header value"))?;
        value.set_sensitive(true);
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}/admin/v1/{path}", self.url))
            .header("content-type", "application/json")
            .header(self.credential.0, value)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CliError::usage(format!("--server: {e}")))?;
        let res = client.request(req).await.map_err(|e| {
            // The cause (a refused connection, an untrusted certificate) is at the chain's end.
            let mut message = format!("cannot reach {}: {e}", self.url);
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            if message.contains("UnknownIssuer") && self.cacert.is_none() {
                message.push_str(
                    " (a development certificate? trust it with --cacert or LATCH_CACERT)",
                );
            }
            CliError::new("Unreachable", message, exit::FAILURE)
        })?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                CliError::new(
                    "Unreachable",
                    format!("reading the answer: {e}"),
                    exit::FAILURE,
                )
            })?
            .to_bytes();
        Ok((status, bytes))
    }

    fn failure(&self, status: u16, body: &[u8]) -> CliError {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = value["error"]["message"]
            .as_str()
            .unwrap_or("the admin API refused the request")
            .to_owned();
        let (code, exit) = match status {
            401 | 403 => ("Denied", exit::DENIED),
            404 => ("NotFound", exit::NOT_FOUND),
            409 => ("AlreadyExists", exit::ALREADY_EXISTS),
            400 => ("InvalidArgument", 2),
            _ => ("Failed", exit::FAILURE),
        };
        CliError::new(code, message, exit)
    }
}
