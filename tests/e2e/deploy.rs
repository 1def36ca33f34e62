//! What `deploy/` says about latch must be true of latch: the ports it listens on, the probe
//! paths it serves, the environment variables it reads, the configuration it accepts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Server, BIN};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every YAML document in a file, as JSON (PyYAML, from tests/requirements.txt).
fn yaml(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs (pip install -r tests/requirements.txt)");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The environment variables the `latch` binary reads, from its source.
fn known_variables() -> BTreeSet<String> {
    let mut folders = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut names = BTreeSet::new();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for (i, _) in text.match_indices("\"LATCH_") {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
    assert!(names.contains("LATCH_DATABASE_URL"), "{names:?}");
    names
}

/// `latch <args>` parses; the exit code is anything but a usage (2) or configuration (78) error.
fn parses(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .env_remove("LATCH_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "latch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_kubernetes_manifests_describe_latch_as_it_is() {
    let known = known_variables();
    let mut roles = BTreeSet::new();
    for file in ["sts.yaml", "face.yaml", "admin.yaml"] {
        for doc in yaml(&deploy().join("kubernetes").join(file)) {
            if doc["kind"] != "Deployment" {
                continue;
            }
            let container = &doc["spec"]["template"]["spec"]["containers"][0];
            let args: Vec<&str> = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            parses(&args);
            let role = args[args.iter().position(|a| *a == "--role").unwrap() + 1];
            roles.insert(role.to_owned());
            let listen = args[args
                .iter()
                .position(|a| *a == format!("--{role}-listen"))
                .unwrap()
                + 1];
            let port = container["ports"][0]["containerPort"].as_u64().unwrap();
            assert!(
                listen.ends_with(&format!(":{port}")),
                "{file}: {listen} vs {port}"
            );
            for (probe, path) in [
                ("readinessProbe", "/health/ready"),
                ("livenessProbe", "/health/live"),
            ] {
                let get = &container[probe]["httpGet"];
                assert_eq!(get["path"], path, "{file}");
                assert_eq!(get["port"].as_u64(), Some(port), "{file}");
                assert_eq!(get["scheme"], "HTTPS", "{file}");
            }
            for var in container["env"].as_array().unwrap() {
                let name = var["name"].as_str().unwrap();
                assert!(known.contains(name), "{file}: latch does not read {name}");
            }
        }
    }
    assert_eq!(
        roles,
        BTreeSet::from(["sts".into(), "face".into(), "admin".into()])
    );

    // The configuration the ConfigMap mounts is one latch accepts.
    let config = &yaml(&deploy().join("kubernetes").join("config.yaml"))[0];
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("latch.toml");
    std::fs::write(&toml, config["data"]["latch.toml"].as_str().unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["--config", toml.to_str().unwrap(), "store", "status"])
        .env_remove("LATCH_DATABASE_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("configuration error"), "{err}");
    assert!(err.contains("no shared store configured"), "{err}");
}

#[tokio::test]
async fn the_compose_file_and_the_image_run_latch_as_it_is() {
    let known = known_variables();
    let compose = &yaml(&deploy().join("compose.yaml"))[0];
    let latch = &compose["services"]["latch"];
    for name in latch["environment"].as_object().unwrap().keys() {
        assert!(known.contains(name), "compose: latch does not read {name}");
    }
    let args: Vec<&str> = latch["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    parses(&args);
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .unwrap();
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    parses(&cmd.iter().map(String::as_str).collect::<Vec<_>>());

    // The probes the manifests use answer on a running server, without credentials.
    let s = Server::start().await;
    for url in [&s.url, &s.face_url, &s.admin_url] {
        for (path, status) in [("/health/live", 200), ("/health/ready", 200)] {
            assert_eq!(
                s.client(url).request("GET", path, &[], "").await.status,
                status,
                "{url}{path}"
            );
        }
    }
    s.finish().await;
}
