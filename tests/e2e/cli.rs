//! The `latch` admin commands against a running server's store: the changes take effect on the
//! server's very next request.

use serde_json::Value;

use crate::harness::{lat_body, Server};

fn json_out(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const NEW: &str = "/subscriptions/33333333-3333-4333-8333-333333333333/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/new-isv";

#[tokio::test]
async fn regenerating_key1_refuses_its_old_value_at_once_and_key2_keeps_working() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let body = lat_body(&d.client_id, &["Face.Identification"]);
    assert_eq!(s.issue(Some(&d.isv_key), "", &body).await.status, 200);

    let out = json_out(&s.cli(&[
        "--json",
        "keys",
        "regenerate",
        &d.isv_id,
        "--key-name",
        "key1",
    ]));
    let new_key = out["key"].as_str().unwrap().to_owned();
    s.secret(&new_key);
    assert_eq!(out["keyName"], "Key1");

    assert_eq!(
        s.issue(Some(&d.isv_key), "", &body).await.status,
        401,
        "old Key1 is refused on the next request"
    );
    assert_eq!(
        s.issue(Some(&d.isv_key2), "", &body).await.status,
        200,
        "Key2 still works"
    );
    assert_eq!(
        s.issue(Some(&new_key), "", &body).await.status,
        200,
        "the new Key1 works"
    );

    let keys = json_out(&s.cli(&["-o", "json", "keys", "list", &d.isv_id]));
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(
        !keys.to_string().contains(&new_key),
        "listing never shows a key"
    );
    s.finish().await;
}

#[tokio::test]
async fn a_new_isv_is_created_enabled_narrowed_and_disabled() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let created = json_out(&s.cli(&["--json", "resource", "create", NEW]));
    let key = created["key1"].as_str().unwrap().to_owned();
    s.secret(&key);
    s.secret(created["key2"].as_str().unwrap());
    let both = lat_body(&d.client_id, &["Face.Identification", "Face.Verification"]);

    let (_, _, message) = s.issue(Some(&key), "", &both).await.error();
    assert_eq!(message, "ISV features not enabled for this resource id.");

    json_out(&s.cli(&[
        "--json",
        "isv",
        "enable",
        NEW,
        "--grant",
        "Face.Identification,Face.Verification",
    ]));
    assert_eq!(s.issue(Some(&key), "", &both).await.status, 200);

    json_out(&s.cli(&[
        "--json",
        "isv",
        "enable",
        NEW,
        "--grant",
        "Face.Verification",
    ]));
    let (_, _, message) = s.issue(Some(&key), "", &both).await.error();
    assert_eq!(
        message,
        "Missing required flags to grant Face.Identification."
    );

    json_out(&s.cli(&["--json", "client", "block", "--isv", NEW, &d.client_id]));
    let a = s
        .issue(
            Some(&key),
            "",
            &lat_body(&d.client_id, &["Face.Verification"]),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.error().2.contains("blocked"), "{}", a.body);
    json_out(&s.cli(&["--json", "client", "unblock", "--isv", NEW, &d.client_id]));
    assert_eq!(
        s.issue(
            Some(&key),
            "",
            &lat_body(&d.client_id, &["Face.Verification"])
        )
        .await
        .status,
        200
    );

    let shown = json_out(&s.cli(&["--json", "isv", "disable", NEW]));
    assert_eq!(shown["isvEnabled"], false);
    let (_, _, message) = s.issue(Some(&key), "", &both).await.error();
    assert_eq!(message, "ISV features not enabled for this resource id.");
    s.finish().await;
}

#[tokio::test]
async fn exit_codes_tell_scripts_what_happened() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let code = |args: &[&str]| s.cli(args).status.code().unwrap();
    assert_eq!(code(&["resource", "show", &d.client_id]), 0);
    assert_eq!(
        code(&["resource", "create", &d.client_id.to_uppercase()]),
        4,
        "already exists"
    );
    assert_eq!(code(&["resource", "show", NEW]), 3, "not found");
    assert_eq!(code(&["keys", "regenerate", NEW, "--key-name", "key2"]), 3);
    assert_eq!(
        code(&["resource", "show", "/subscriptions/nope"]),
        2,
        "bad id"
    );
    assert_eq!(
        code(&["isv", "enable", &d.client_id, "--grant", "Face.Everything"]),
        2
    );
    assert_eq!(
        code(&["keys", "regenerate", &d.client_id, "--key-name", "key3"]),
        2
    );

    let bad = s.dir.path().join("bad.toml");
    std::fs::write(&bad, "[sts]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = s.cli(&["--config", bad.to_str().unwrap(), "resource", "list"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));

    let out = s.cli(&["--json", "resource", "show", NEW]);
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "NotFound");
    s.finish().await;
}

#[tokio::test]
async fn no_demo_means_no_demo() {
    let s = Server::start_with(&["--no-demo"]).await;
    assert!(s.demo.isv_key.is_empty());
    assert!(!s.data_dir().join("demo.env").exists());
    let listed = json_out(&s.cli(&["--json", "resource", "list"]));
    assert_eq!(listed, Value::Array(vec![]));
    let created = json_out(&s.cli(&["--json", "resource", "create", NEW]));
    s.secret(created["key1"].as_str().unwrap());
    s.secret(created["key2"].as_str().unwrap());
    s.finish().await;
}

#[test]
fn the_demo_file_is_private() {
    // Checked on a fresh start, without a runtime.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Server::start());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data_dir().join("demo.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(s.data_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let mut files = 0;
        for entry in std::fs::read_dir(s.data_dir()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("latch.db") {
                files += 1;
                let mode = entry.metadata().unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
        }
        if !crate::database::on_postgres() {
            assert!(files >= 2, "the database and its write-ahead log");
        }
        for secret in ["audit-key.p8", "admin.env", "demo.env"] {
            let mode = std::fs::metadata(s.data_dir().join(secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{secret}");
        }
    }
    rt.block_on(s.finish());
}

#[tokio::test]
async fn token_mode_is_set_by_the_operator_and_enforced_by_the_front() {
    let s = Server::start().await;
    let d = s.demo.clone();
    let shown = json_out(&s.cli(&[
        "--json",
        "resource",
        "auth-mode",
        &d.client_id,
        "--mode",
        "token",
    ]));
    assert_eq!(shown["authMode"], "token");
    let a = s
        .face(
            "GET",
            "/face/v1.0/largepersongroups",
            &[("Ocp-Apim-Subscription-Key", &d.client_key)],
            "",
        )
        .await;
    assert_eq!(a.status, 401, "token mode refuses the key");
    let bearer = s
        .request(
            "POST",
            "/sts/v1.0/issueToken",
            &[("Ocp-Apim-Subscription-Key", &d.client_key)],
            "",
        )
        .await
        .body;
    let a = s
        .face(
            "GET",
            "/face/v1.0/largepersongroups",
            &[("Authorization", &format!("Bearer {bearer}"))],
            "",
        )
        .await;
    assert_eq!(
        a.status, 501,
        "the bearer token passes the checks; no backend is configured"
    );
    assert_eq!(
        s.cli(&["resource", "auth-mode", &d.client_id, "--mode", "both"])
            .status
            .code(),
        Some(2)
    );
    s.finish().await;
}
