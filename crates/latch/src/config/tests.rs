use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::resolve(
        Config::parse(Path::new("test.toml"), text)?,
        Overrides::default(),
    )
}

#[test]
fn defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.sts.listen.to_string(), "127.0.0.1:8700");
    assert_eq!(c.sts.public_url, None);
    assert_eq!(c.sts.issuer, "urn:latch:sts");
    assert_eq!(c.audit.chain, "main");
    assert_eq!(c.audit.journal.segment_bytes, 8 << 20);
    assert_eq!(c.log.format, LogFormat::Text);
    let limits = c.server.limits;
    assert_eq!(
        (limits.max_connections, limits.max_per_address),
        (4096, 256)
    );
    assert_eq!(
        (
            limits.header_read_timeout.as_secs(),
            limits.idle_timeout.as_secs(),
            limits.body_read_timeout.as_secs(),
            limits.request_timeout.map(|t| t.as_secs()),
        ),
        (10, 60, 60, Some(30))
    );
    assert_eq!(c.server.without_request_timeout().request_timeout, None);
    assert_eq!(c.server.client_addresses.header(), None);
    assert_eq!(c.sts.limits, latch_sts::StsLimits::default());
}

#[test]
fn the_connection_discipline_and_the_sts_limits_are_configurable() {
    let c = parse(
        "[server]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 3\nbody_read_timeout_secs = 4\n\
         request_timeout_secs = 5\nmax_connections = 100\nmax_connections_per_address = 10\n\
         client_address_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]\n\
         [sts]\nrate_limit_per_second = 7\nrate_limit_burst = 8\n\
         address_rate_limit_per_second = 9\naddress_rate_limit_burst = 10\nrefusal_summary_secs = 11\n",
    )
    .unwrap();
    let l = c.server.limits;
    assert_eq!(
        (
            l.header_read_timeout.as_secs(),
            l.idle_timeout.as_secs(),
            l.body_read_timeout.as_secs(),
            l.request_timeout.map(|t| t.as_secs()),
            l.max_connections,
            l.max_per_address
        ),
        (2, 3, 4, Some(5), 100, 10)
    );
    assert_eq!(
        c.server.client_addresses.header().map(|h| h.as_str()),
        Some("x-forwarded-for")
    );
    let sts = &c.sts.limits;
    assert_eq!((sts.per_key.per_second, sts.per_key.burst), (7.0, 8.0));
    assert_eq!(
        (sts.per_address.per_second, sts.per_address.burst),
        (9.0, 10.0)
    );
    assert_eq!(sts.refusal_summary.as_secs(), 11);
    assert_eq!(sts.client_addresses, c.server.client_addresses);
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let err = parse("[sts]\nlisten = \"127.0.0.1:1\"\nissuer_typo = \"x\"\n").unwrap_err();
    assert!(err.to_string().contains("issuer_typo"), "{err}");
    let err = parse("colour = 1").unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn bad_values_name_their_setting() {
    for (text, setting) in [
        ("[sts]\nlisten = \"localhost\"", "sts.listen"),
        ("[sts]\npublic_url = \"ftp://x\"", "sts.public_url"),
        ("[sts]\nissuer = \"\"", "sts.issuer"),
        ("[audit]\nchain = \"a b\"", "audit.chain"),
        ("[audit]\njournal_segment_mib = 0", "audit.journal_segment_mib"),
        (
            "[audit]\njournal_segment_mib = 1025",
            "audit.journal_segment_mib",
        ),
        ("[log]\nformat = \"xml\"", "log.format"),
        (
            "[server]\nheader_read_timeout_secs = 0",
            "server.header_read_timeout_secs",
        ),
        (
            "[server]\nidle_timeout_secs = 3601",
            "server.idle_timeout_secs",
        ),
        (
            "[server]\nbody_read_timeout_secs = 0",
            "server.body_read_timeout_secs",
        ),
        (
            "[server]\nrequest_timeout_secs = 0",
            "server.request_timeout_secs",
        ),
        ("[server]\nmax_connections = 0", "server.max_connections"),
        (
            "[server]\nmax_connections = 10\nmax_connections_per_address = 11",
            "server.max_connections_per_address",
        ),
        (
            "[server]\nclient_address_header = \"bad header\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
            "server.client_address_header",
        ),
        (
            "[server]\nclient_address_header = \"x-forwarded-for\"",
            "server.client_address_header",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]",
            "server.trusted_proxies",
        ),
        (
            "[server]\nclient_address_header = \"x-forwarded-for\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
            "server.trusted_proxies",
        ),
        (
            "[sts]\nrate_limit_per_second = 0",
            "sts.rate_limit_per_second",
        ),
        ("[sts]\nrate_limit_burst = 0.5", "sts.rate_limit_burst"),
        (
            "[sts]\naddress_rate_limit_per_second = -1",
            "sts.address_rate_limit_per_second",
        ),
        (
            "[sts]\naddress_rate_limit_burst = 0",
            "sts.address_rate_limit_burst",
        ),
        (
            "[sts]\nrefusal_summary_secs = 0",
            "sts.refusal_summary_secs",
        ),
        ("[face]\nrate_limit_burst = 0", "face.rate_limit_burst"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.to_string().starts_with(setting), "{text}: {err}");
    }
    assert!(parse("[sts]\nlisten = 5").is_err());
}

#[test]
fn overrides_win_over_the_file() {
    let file = Config::parse(
        Path::new("t"),
        "data_dir = \"/a\"\n[sts]\nlisten = \"127.0.0.1:1\"",
    )
    .unwrap();
    let o = Overrides {
        data_dir: Some("/b".into()),
        sts_listen: Some("127.0.0.1:2".into()),
        ..Overrides::default()
    };
    let c = Config::resolve(file, o).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/b"));
    assert_eq!(c.sts.listen.port(), 2);
    assert_eq!(c.sts.public_url, None);
}

#[test]
fn the_feature_table_is_configurable_and_checked() {
    use latch_face::operation::{Operation, Requirement};
    let c = parse("[face.features]\nidentify = \"all:Face.Identification,Face.Verification\"\ncreate_large_person_group = \"Face.Identification\"\ndetect_with_face_id = \"none\"\n").unwrap();
    assert!(
        matches!(c.face.checks.policy.requirement(Operation::Identify), Requirement::All(f) if f.to_csv() == "Face.Identification,Face.Verification")
    );
    assert!(matches!(
        c.face.checks.policy.requirement(Operation::CreateGroup),
        Requirement::All(_)
    ));
    assert_eq!(
        c.face
            .checks
            .policy
            .requirement(Operation::DetectWithFaceId),
        &Requirement::None
    );
    assert!(
        matches!(
            c.face.checks.policy.requirement(Operation::Verify),
            Requirement::All(_)
        ),
        "defaults stay"
    );
    for bad in [
        "[face.features]\nidentifyy = \"none\"",
        "[face.features]\nidentify = \"Face.Everything\"",
        "[face]\nrate_limit_per_second = 0",
        "[face]\nleeway_secs = 61",
        "[face]\nstore_outage = \"open\"",
        "[face]\nstore_outage_secs = 30",
        "[face]\nstore_outage = \"cached\"\nstore_outage_secs = 0",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_recheck_interval_depends_on_the_store_and_is_bounded() {
    use std::time::Duration;
    assert_eq!(parse("").unwrap().store.recheck, Duration::from_millis(1));
    let shared = "[store]\nurl = \"postgres://latch@db.example/latch\"\n";
    assert_eq!(
        parse(shared).unwrap().store.recheck,
        Duration::from_millis(100)
    );
    assert_eq!(
        parse(&format!("{shared}recheck_ms = 0"))
            .unwrap()
            .store
            .recheck,
        Duration::ZERO
    );
    assert_eq!(
        parse("[store]\nrecheck_ms = 1000").unwrap().store.recheck,
        Duration::from_secs(1)
    );
    for bad in [
        "[store]\nrecheck_ms = -1",
        "[store]\nrecheck_ms = 1001",
        "[store]\nrecheck_ms = \"1\"",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn tls_is_on_unless_turned_off_explicitly() {
    assert_eq!(
        parse("").unwrap().tls,
        TlsSetting::Development {
            cname: latch_tls::Cname::parse("localhost").unwrap()
        }
    );
    assert_eq!(parse("[tls]\nmode = \"off\"").unwrap().tls, TlsSetting::Off);
    let files = parse("[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\ncname = \"sts.example.com\"")
        .unwrap()
        .tls;
    assert!(
        matches!(&files, TlsSetting::Files { cname, .. } if cname.to_string() == "sts.example.com"),
        "{files:?}"
    );
    for (text, setting) in [
        ("[tls]\nmode = \"maybe\"", "tls.mode"),
        ("[tls]\nmode = \"off\"\ncert = \"/c.pem\"", "tls.mode"),
        (
            "[tls]\ncert = \"/c.pem\"\ncname = \"a.example\"",
            "tls.cert",
        ),
        ("[tls]\nkey = \"/k.pem\"", "tls.cert"),
        ("[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"", "tls.cname"),
        ("[tls]\ncname = \"*.example.com\"", "tls.cname"),
        ("[tls]\nverify = true", "unknown field"),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(setting), "{text}: {err}");
    }
    // The override turns off what the file configures.
    let file = Config::parse(
        Path::new("t"),
        "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\ncname = \"a.example\"",
    )
    .unwrap();
    let o = Overrides {
        tls_mode: Some("off".into()),
        ..Overrides::default()
    };
    assert_eq!(Config::resolve(file, o).unwrap().tls, TlsSetting::Off);
}

#[test]
fn the_engine_is_the_default_backend_and_an_upstream_replaces_it() {
    let c = parse("data_dir = \"/d\"").unwrap();
    assert_eq!(c.face.models_dir, PathBuf::from("/d/models"));
    let engine = c.face.engine.unwrap();
    assert!(engine.image_urls.hosts.is_empty());
    assert_eq!(
        engine.image_urls.timeout,
        std::time::Duration::from_secs(10)
    );
    assert!(parse("[face]\nengine = \"off\"")
        .unwrap()
        .face
        .engine
        .is_none());
    let upstream = parse("[face]\nupstream_url = \"https://face.example\"").unwrap();
    assert!(upstream.face.engine.is_none() && upstream.face.upstream.is_some());
    let c = parse(
        "[face]\nmodels_dir = \"/m\"\nimage_url_hosts = [\"img.example\", \"10.0.0.1:8080\"]\nimage_url_timeout_secs = 3",
    )
    .unwrap();
    assert_eq!(c.face.models_dir, PathBuf::from("/m"));
    let engine = c.face.engine.unwrap();
    assert_eq!(engine.image_urls.hosts, ["img.example", "10.0.0.1:8080"]);
    assert_eq!(engine.image_urls.timeout, std::time::Duration::from_secs(3));
    for (text, setting) in [
        ("[face]\nengine = \"yes\"", "face.engine"),
        (
            "[face]\nimage_url_timeout_secs = 0",
            "face.image_url_timeout_secs",
        ),
        (
            "[face]\nimage_url_timeout_secs = 61",
            "face.image_url_timeout_secs",
        ),
        (
            "[face]\nimage_url_hosts = [\"*.example\"]",
            "face.image_url_hosts",
        ),
        (
            "[face]\nimage_url_hosts = [\"https://img.example\"]",
            "face.image_url_hosts",
        ),
        ("[face]\nimage_url_hosts = [\"\"]", "face.image_url_hosts"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.to_string().contains(setting), "{text}: {err}");
    }
    let o = Overrides {
        face_engine: Some("off".into()),
        ..Overrides::default()
    };
    let file = Config::parse(Path::new("t"), "").unwrap();
    assert!(Config::resolve(file, o).unwrap().face.engine.is_none());
}

#[test]
fn the_example_file_in_deploy_is_valid() {
    let text = include_str!("../../../../deploy/latch.example.toml");
    parse(text).unwrap();
}
