//! The built-in Face engine under load, on a second server with the engine on:
//!
//! * `engine detect`: `detect` with `returnFaceId=true` on a portrait (one face, a new `faceId`
//!   each time), against the networks' own rate: decode, detect and embed of the same photo in
//!   this process, on every core at once;
//! * `engine identify`: `identify` of one face against a trained group of [`PERSONS`] persons,
//!   against the same server answering `GET largepersongroups/{id}` with the same key and token
//!   (the checks, the usage record and a store read, without the comparison).
//!
//! Enrolling the group (one face per person, the four test photos in turn) goes through the
//! engine's own API before the runs; its time is reported too.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use serde_json::{json, Value};

use crate::load::{self, Outcome, Scenario};
use crate::server::Server;

/// The size of the identified group.
pub(crate) const PERSONS: usize = 300;
const GROUP: &str = "bench-staff";
const PHOTOS: [&str; 4] = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];

/// One keep-alive HTTPS connection for set-up calls.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Result<Conn, String> {
        Ok(Conn {
            sender: load::connect(addr, tls).await?,
            host: addr.to_string(),
        })
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        expect: u16,
    ) -> Result<Value, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("{method} {path}: connection: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status != expect {
            return Err(format!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// Seconds one decode + detect + embed of `photo` takes on one core, all cores busy.
fn inference_per_core(
    models_dir: &Path,
    photo: &[u8],
    cores: usize,
    duration: Duration,
) -> Result<f64, String> {
    let models = Arc::new(latch_models::load_face_api(models_dir).map_err(|e| e.to_string())?);
    let photo = Arc::new(photo.to_vec());
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let (models, photo) = (models.clone(), photo.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < duration || n == 0 {
                    if let Ok(image) = latch_vision::decode(&photo) {
                        for face in models.detect(&image) {
                            let _ = models.embed(&image, &face.rect);
                        }
                    }
                    n += 1;
                }
                start.elapsed().as_secs_f64() / n as f64
            })
        })
        .collect();
    let times: Vec<f64> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
    Ok(times.iter().sum::<f64>() / times.len().max(1) as f64)
}

/// Runs the engine's scenarios; their results, as the report lists them.
pub(crate) async fn bench(
    latch: &Path,
    connections: &[usize],
    duration: Duration,
    cores: usize,
) -> Result<Vec<Value>, String> {
    let models_dir = latch_models::test_dir().map_err(|e| e.to_string())?;
    let photos = models_dir.join("photos");
    let probe = photo(&photos, "obama3.jpg")?;
    let per_core = inference_per_core(&models_dir, &probe, cores, Duration::from_secs(2))?;
    let inference_ceiling = cores as f64 / per_core;
    println!(
        "\nengine: decode + detect + embed of obama3.jpg {:.1} ms per core in this process ({inference_ceiling:.1} images/s on {cores} cores)",
        per_core * 1e3
    );

    let engine = Engine::start(latch, &models_dir).await?;
    let mut conn = engine.enrol(&photos, cores).await?;
    let identify = engine.identify_probe(&mut conn, &probe).await?;
    let tokens = Arc::new(vec![engine.token.clone()]);
    let mut results = Vec::new();
    for &connections in connections {
        println!("\n{connections} connections, built-in engine:");
        println!(
            "  {:<16} {:>9} {:>9} {:>9} {:>12} {:>7}  vs ceiling",
            "scenario", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "errors"
        );
        let scenarios = [
            engine.scenario(
                &tokens,
                "engine get group",
                "GET",
                "/face/v1.0/largepersongroups/bench-staff",
                Bytes::new(),
            ),
            engine.scenario(
                &tokens,
                "engine identify",
                "POST",
                "/face/v1.0/identify",
                identify.clone(),
            ),
            engine.scenario(
                &tokens,
                "engine detect",
                "POST",
                "/face/v1.0/detect?returnFaceId=true",
                probe.clone(),
            ),
        ];
        let mut get_group: Option<f64> = None;
        for s in scenarios {
            let row = engine
                .run(s, connections, duration, inference_ceiling, &mut get_group)
                .await?;
            results.push(row);
        }
    }
    let (rss, peak) = engine.server.memory();
    println!(
        "engine server memory: {:.1} MB resident now, {:.1} MB at peak",
        rss as f64 / 1e6,
        peak as f64 / 1e6
    );
    Ok(results)
}

/// The test photo `name`.
fn photo(photos: &Path, name: &str) -> Result<Bytes, String> {
    std::fs::read(photos.join(name))
        .map(Bytes::from)
        .map_err(|e| format!("{name}: {e}"))
}

/// The server with the engine on, and what a client needs to call its Face front.
struct Engine {
    server: Server,
    tls: Arc<rustls::ClientConfig>,
    face: SocketAddr,
    key: String,
    /// A limited access token of the demo client.
    token: String,
}

impl Engine {
    /// Starts the server with the models in `models_dir`, and mints a token.
    async fn start(latch: &Path, models_dir: &Path) -> Result<Engine, String> {
        let server = Server::start(latch, Some(models_dir))?;
        let tls = Arc::new(crate::trust(
            &server.data_dir().join("tls").join("dev-cert.pem"),
        )?);
        let face = crate::addr(&server.face)?;
        let key = server.demo("CLIENT_KEY")?;
        let token = crate::mint(
            &server,
            &server.demo("ISV_RESOURCE_ID")?,
            &server.demo("CLIENT_RESOURCE_ID")?,
            1,
        )
        .await?
        .remove(0);
        Ok(Engine {
            server,
            tls,
            face,
            key,
            token,
        })
    }

    /// Enrols the group: its persons, one face each (the photos in `photos` in turn), two at
    /// a time (the server's cores), then trains it; the connection it was made on.
    async fn enrol(&self, photos: &Path, cores: usize) -> Result<Conn, String> {
        let enrolled = Instant::now();
        let mut conn = Conn::open(self.face, self.tls.clone()).await?;
        let json_headers = [
            ("Ocp-Apim-Subscription-Key", self.key.as_str()),
            ("content-type", "application/json"),
        ];
        conn.call(
            "PUT",
            &format!("/face/v1.0/largepersongroups/{GROUP}"),
            &json_headers,
            Bytes::from_static(br#"{"name": "Benchmark staff"}"#),
            200,
        )
        .await?;
        let mut persons = Vec::with_capacity(PERSONS);
        for i in 0..PERSONS {
            let made = conn
                .call(
                    "POST",
                    &format!("/face/v1.0/largepersongroups/{GROUP}/persons"),
                    &json_headers,
                    Bytes::from(json!({ "name": format!("person {i}") }).to_string()),
                    200,
                )
                .await?;
            persons.push(made["personId"].as_str().unwrap_or_default().to_owned());
        }
        let images: Vec<Bytes> = PHOTOS
            .iter()
            .map(|p| photo(photos, p))
            .collect::<Result<_, _>>()?;
        self.add_faces(&persons, &images, cores.max(1)).await?;
        conn.call(
            "POST",
            &format!("/face/v1.0/largepersongroups/{GROUP}/train"),
            &json_headers,
            Bytes::new(),
            202,
        )
        .await?;
        println!(
            "engine: enrolled {PERSONS} persons (one face each) and trained in {:.1} s",
            enrolled.elapsed().as_secs_f64()
        );
        Ok(conn)
    }

    /// Adds one face to each person (the images in turn), over `workers` connections at once.
    async fn add_faces(
        &self,
        persons: &[String],
        images: &[Bytes],
        workers: usize,
    ) -> Result<(), String> {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..workers {
            let mine: Vec<(String, Bytes)> = persons
                .iter()
                .enumerate()
                .filter(|(i, _)| i % workers == w)
                .map(|(i, p)| (p.clone(), images[i % images.len()].clone()))
                .collect();
            let (face, tls, key) = (self.face, self.tls.clone(), self.key.clone());
            tasks.spawn(async move {
                let mut conn = Conn::open(face, tls).await?;
                for (person, image) in mine {
                    conn.call(
                        "POST",
                        &format!(
                            "/face/v1.0/largepersongroups/{GROUP}/persons/{person}/persistedfaces"
                        ),
                        &[
                            ("Ocp-Apim-Subscription-Key", key.as_str()),
                            ("content-type", "application/octet-stream"),
                        ],
                        image,
                        200,
                    )
                    .await?;
                }
                Ok::<(), String>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| e.to_string())??;
        }
        Ok(())
    }

    /// Detects the face in `probe` and checks that identifying it finds someone; the body of
    /// that identify request.
    async fn identify_probe(&self, conn: &mut Conn, probe: &Bytes) -> Result<Bytes, String> {
        let lat = format!("Bearer {}", self.token);
        let detected = conn
            .call(
                "POST",
                "/face/v1.0/detect?returnFaceId=true",
                &[
                    ("Ocp-Apim-Subscription-Key", self.key.as_str()),
                    ("LimitedAccessToken", lat.as_str()),
                    ("content-type", "application/octet-stream"),
                ],
                probe.clone(),
                200,
            )
            .await?;
        let face_id = detected[0]["faceId"]
            .as_str()
            .ok_or("detect returned no faceId")?
            .to_owned();
        let identify = Bytes::from(
            json!({"largePersonGroupId": GROUP, "faceIds": [face_id], "maxNumOfCandidatesReturned": 1})
                .to_string(),
        );
        let check = conn
            .call(
                "POST",
                "/face/v1.0/identify",
                &[
                    ("Ocp-Apim-Subscription-Key", self.key.as_str()),
                    ("LimitedAccessToken", lat.as_str()),
                    ("content-type", "application/json"),
                ],
                identify.clone(),
                200,
            )
            .await?;
        if check[0]["candidates"].as_array().is_none_or(Vec::is_empty) {
            return Err(format!("identify found nobody: {check}"));
        }
        Ok(identify)
    }

    /// A scenario of the Face front with the client's key and `tokens`.
    fn scenario(
        &self,
        tokens: &Arc<Vec<String>>,
        name: &'static str,
        method: &'static str,
        path: &'static str,
        body: Bytes,
    ) -> Scenario {
        Scenario {
            name,
            method,
            path,
            headers: vec![
                ("Ocp-Apim-Subscription-Key", self.key.clone()),
                (
                    "content-type",
                    if method == "GET" || path.ends_with("identify") {
                        "application/json".into()
                    } else {
                        "application/octet-stream".into()
                    },
                ),
            ],
            body,
            tokens: tokens.clone(),
            expect: 200,
        }
    }

    /// Runs `s` over `connections` and prints it against its ceiling (`get group`'s rate,
    /// kept in `get_group` when it runs, for `identify`); its row.
    async fn run(
        &self,
        s: Scenario,
        connections: usize,
        duration: Duration,
        inference_ceiling: f64,
        get_group: &mut Option<f64>,
    ) -> Result<Value, String> {
        let name = s.name;
        let before = self.server.cpu();
        let outcome: Outcome = load::run(
            self.face,
            self.tls.clone(),
            Arc::new(s),
            connections,
            duration,
        )
        .await?;
        let cpu = (self.server.cpu() - before).as_secs_f64() / outcome.requests.max(1) as f64;
        let rps = outcome.per_second();
        let (ceiling, ceiling_name) = match (name, *get_group) {
            ("engine get group", _) => {
                *get_group = Some(rps);
                (rps, "itself".to_owned())
            }
            ("engine identify", Some(g)) => (g, "engine get group".to_owned()),
            ("engine detect", _) => (inference_ceiling, "the networks in-process".to_owned()),
            _ => (rps, "none".to_owned()),
        };
        println!(
            "  {:<16} {:>9.1} {:>9.2} {:>9.2} {:>12.1} {:>7}  {:>5.1} % of {ceiling_name} ({ceiling:.1} req/s)",
            name,
            rps,
            outcome.quantile_ms(0.5),
            outcome.quantile_ms(0.99),
            cpu * 1e6,
            outcome.errors,
            rps / ceiling * 100.0
        );
        let mut row = outcome.row(connections, name, cpu, &ceiling_name, ceiling);
        row["groupPersons"] = json!(PERSONS);
        Ok(row)
    }
}
