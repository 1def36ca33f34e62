//! The built-in Face engine behind the real front: the README's device call, and a full
//! scenario driven by Microsoft's official Python SDK with only the endpoint, the key and the
//! `LimitedAccessToken` header set.

use serde_json::Value;

use crate::harness::Server;

/// A server with the engine on, its weights from the tests' shared directory.
async fn with_engine() -> (Server, std::path::PathBuf) {
    let models = latch_models::test_dir().expect("the engine's weights and photos (fetched once)");
    let dir = models.to_string_lossy().into_owned();
    let s = Server::start_full(
        &[],
        &[("LATCH_FACE_ENGINE", "on"), ("LATCH_FACE_MODELS_DIR", &dir)],
    )
    .await;
    (s, models)
}

#[tokio::test]
async fn the_readme_device_call_identifies_the_demo_person() {
    let (s, _) = with_engine().await;
    let key = s.demo.client_key.clone();
    let t = s.demo_token(&["Face.Identification"]).await;
    let lat = format!("Bearer {t}");
    let photo = std::fs::read(s.demo_value("DEMO_PHOTO")).unwrap();
    let group = s.demo_value("DEMO_GROUP_ID");
    let person = s.demo_value("DEMO_PERSON_ID");
    let http = s.client(&s.face_url);
    let headers = [
        ("Ocp-Apim-Subscription-Key", key.as_str()),
        ("LimitedAccessToken", lat.as_str()),
        ("Content-Type", "application/octet-stream"),
    ];
    let detected = http
        .send(
            "POST",
            "/face/v1.0/detect?returnFaceId=true",
            &headers,
            photo,
        )
        .await
        .unwrap();
    assert_eq!(detected.status, 200, "{}", detected.body);
    let faces = detected.json();
    assert_eq!(faces.as_array().map(Vec::len), Some(1), "{faces}");
    let face_id = faces[0]["faceId"].as_str().unwrap().to_owned();
    let rect = &faces[0]["faceRectangle"];
    assert!(rect["width"].as_u64().unwrap() > 50, "{rect}");

    let body = format!(r#"{{"largePersonGroupId": "{group}", "faceIds": ["{face_id}"]}}"#);
    let json_headers = [
        ("Ocp-Apim-Subscription-Key", key.as_str()),
        ("LimitedAccessToken", lat.as_str()),
        ("Content-Type", "application/json"),
    ];
    let identified = s
        .face("POST", "/face/v1.0/identify", &json_headers, &body)
        .await;
    assert_eq!(identified.status, 200, "{}", identified.body);
    let got = identified.json();
    assert_eq!(got[0]["faceId"], face_id.as_str());
    assert_eq!(
        got[0]["candidates"][0]["personId"],
        person.as_str(),
        "{got}"
    );
    assert!(got[0]["candidates"][0]["confidence"].as_f64().unwrap() > 0.5);

    // Someone else is not the demo person.
    let other = std::fs::read(s.demo_value("DEMO_OTHER_PHOTO")).unwrap();
    let detected = http
        .send("POST", "/face/v1.0/detect", &headers, other)
        .await
        .unwrap();
    assert_eq!(detected.status, 200, "{}", detected.body);
    let other_id = detected.json()[0]["faceId"].as_str().unwrap().to_owned();
    let body = format!(r#"{{"largePersonGroupId": "{group}", "faceIds": ["{other_id}"]}}"#);
    let identified = s
        .face("POST", "/face/v1.0/identify", &json_headers, &body)
        .await;
    assert_eq!(identified.status, 200, "{}", identified.body);
    assert_eq!(identified.json()[0]["candidates"], Value::Array(vec![]));

    // The face ids are this resource's: another key's resource cannot use them, and the
    // usage was audited under the token.
    let records = s.audit().await;
    assert!(records.iter().any(|r| serde_json::to_string(r)
        .unwrap()
        .contains("limited_access_token_used")));
    s.finish().await;
}

#[tokio::test]
async fn the_official_python_sdk_runs_a_full_scenario_on_the_engine() {
    let (s, models) = with_engine().await;
    let t = s
        .demo_token(&["Face.Identification", "Face.Verification"])
        .await;
    let got = s
        .run_interop(
            "face_sdk_engine.py",
            vec![
                s.face_url.clone(),
                s.demo.client_key.clone(),
                t.clone(),
                models.join("photos").to_string_lossy().into_owned(),
            ],
        )
        .await;
    let obama = got["persons"]["obama"].as_str().unwrap();
    let biden = got["persons"]["biden"].as_str().unwrap();
    assert_eq!(got["training"], "succeeded", "{got}");
    assert_eq!(got["listed_persons"].as_array().unwrap().len(), 2);
    assert_eq!(got["detected"].as_array().unwrap().len(), 1, "{got}");
    // obama3.jpg is identified as Obama, biden.jpg as Biden, each first.
    assert_eq!(
        got["identify"][0]["candidates"][0]["personId"], obama,
        "{got}"
    );
    assert_eq!(
        got["identify"][1]["candidates"][0]["personId"], biden,
        "{got}"
    );
    assert_eq!(got["verify_to_person"]["isIdentical"], true, "{got}");
    assert_eq!(got["verify_other_to_person"]["isIdentical"], false, "{got}");
    assert_eq!(got["verify_face_to_face"]["isIdentical"], false, "{got}");
    assert_eq!(got["without_token"]["status"], 403);
    assert_eq!(got["without_token"]["code"], "InvalidRequest");
    assert_eq!(got["after_delete"]["status"], 404);
    assert_eq!(got["after_delete"]["code"], "LargePersonGroupNotFound");
    s.finish().await;
}

#[test]
fn the_weights_are_fetched_ahead_of_time_and_checked() {
    let models = latch_models::test_dir().expect("the engine's weights (fetched once)");
    let dir = tempfile::tempdir().unwrap();
    for m in latch_models::FACE_API.members {
        let to = dir.path().join(m.file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(models.join(m.file), &to).unwrap();
    }
    let fetch = || {
        std::process::Command::new(crate::harness::BIN)
            .args(["--json", "face-models", "fetch", "--dir"])
            .arg(dir.path())
            .env_remove("LATCH_CONFIG")
            .output()
            .unwrap()
    };
    // Present and right: checked, listed, nothing fetched.
    let out = fetch();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["package"], latch_models::FACE_API.package);
    assert_eq!(
        listed["files"].as_array().unwrap().len(),
        latch_models::FACE_API.members.len()
    );
    // A file that is not the pinned one is fetched again from the registry.
    let spoiled = dir.path().join(latch_models::FACE_API.members[1].file);
    std::fs::write(&spoiled, b"not the weights").unwrap();
    let out = fetch();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        latch_models::sha256_hex(&std::fs::read(&spoiled).unwrap()),
        latch_models::FACE_API.members[1].sha256
    );
}
