//! A new store's first start: the admin API's credentials, and (unless `--no-demo`) a demo
//! ISV, a demo client and, with the built-in engine, a demo large person group. Their secrets go
//! to files of mode 0600 in the data directory, printed only when standard output is a
//! terminal, so they never reach a log collector.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use latch_audit::signer::write_private;
use latch_core::{FeatureSet, ResourceId};
use latch_store::operations::{Admin, NewKeys};
use latch_store::Store;

use crate::output::{self, CliError};

/// The demo ISV's resource id.
pub(crate) const DEMO_ISV: &str = "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/demo-isv-rg/providers/Microsoft.CognitiveServices/accounts/demo-isv-face";
/// The demo client's resource id.
pub(crate) const DEMO_CLIENT: &str = "/subscriptions/00000000-0000-4000-8000-000000000002/resourceGroups/demo-client-rg/providers/Microsoft.CognitiveServices/accounts/demo-client-face";
/// The file the admin API credentials are written to, in the data directory.
pub(crate) const ADMIN_FILE: &str = "admin.env";
/// The demo client's large person group.
pub(crate) const DEMO_GROUP: &str = "demo-staff";
/// The file the demo credentials are written to, in the data directory.
pub(crate) const DEMO_FILE: &str = "demo.env";

/// A new store gets an operator token and an auditor token for the admin API, written to
/// `admin.env` in the data directory (mode 0600); only their digests are stored.
pub(super) async fn credentials(
    admin: &Admin,
    data_dir: &Path,
    admin_url: &str,
    cacert: Option<&Path>,
) -> Result<(), CliError> {
    let operator = admin
        .reset_admin_credential(latch_store::AdminRole::Operator)
        .await?;
    let auditor = admin
        .reset_admin_credential(latch_store::AdminRole::Auditor)
        .await?;
    let path = data_dir.join(ADMIN_FILE);
    let text = format!(
        "# latch admin API credentials: secret, readable by the owner only.\n\
         # Use them with:  set -a; . {dir}/{ADMIN_FILE}; set +a\n\
         ADMIN_URL={admin_url}\n\
         OPERATOR_TOKEN={operator}\n\
         AUDITOR_TOKEN={auditor}\n{cacert}",
        dir = data_dir.display(),
        cacert = cacert
            .map(|p| format!(
                "# The development certificate the servers present (latch --cacert).\nLATCH_CACERT={}\n",
                p.display()
            ))
            .unwrap_or_default(),
        operator = operator.expose_secret(),
        auditor = auditor.expose_secret(),
    );
    write_private(&path, text.as_bytes(), true).map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("cannot write {}: {e}", path.display()),
            crate::exit::FAILURE,
        )
    })?;
    output::line(&format!(
        "latch: admin API credentials written to {}",
        path.display()
    ));
    Ok(())
}

/// The demo ISV (granted Face.Identification and Face.Verification) and client, their keys
/// written to `demo.env`.
pub(super) async fn demo(
    admin: &Admin,
    data_dir: &Path,
    sts_url: &str,
    cacert: Option<&Path>,
) -> Result<(), CliError> {
    let isv = ResourceId::parse(DEMO_ISV).map_err(|e| CliError::usage(e.to_string()))?;
    let client = ResourceId::parse(DEMO_CLIENT).map_err(|e| CliError::usage(e.to_string()))?;
    let (_, isv_keys) = admin.create_resource(&isv).await?;
    let grants = FeatureSet::parse_csv("Face.Identification,Face.Verification")
        .map_err(|e| CliError::usage(e.to_string()))?;
    admin.set_isv(&isv, true, &grants).await?;
    let (_, client_keys) = admin.create_resource(&client).await?;
    let path = data_dir.join(DEMO_FILE);
    write_private(
        &path,
        demo_env(data_dir, sts_url, cacert, &isv_keys, &client_keys).as_bytes(),
        true,
    )
    .map_err(|e| {
        CliError::new(
            "StartupFailed",
            format!("cannot write {}: {e}", path.display()),
            crate::exit::FAILURE,
        )
    })?;
    tracing::info!(target: "latch::serve", path = %path.display(), "created the demo ISV and client");
    if std::io::stdout().is_terminal() {
        output::line(&format!(
            "Demo ISV:    {DEMO_ISV}\n  Key1: {}\nDemo client: {DEMO_CLIENT}\n  Key1: {}\n(also in {}; shown this once)",
            isv_keys.key1.expose_secret(),
            client_keys.key1.expose_secret(),
            path.display()
        ));
    } else {
        output::line(&format!(
            "latch: demo credentials written to {}",
            path.display()
        ));
    }
    Ok(())
}

/// The built-in Face engine: its weights fetched into `models_dir` if missing (from the npm
/// registry, digests checked) and loaded.
pub(super) async fn start_engine(
    settings: &crate::config::FaceEngineConfig,
    models_dir: &Path,
    store: Arc<dyn Store>,
    clock: Arc<dyn latch_core::Clock>,
    plain_http: bool,
) -> Result<Arc<latch_engine::Engine>, CliError> {
    let dir = models_dir.to_owned();
    let failed = |what: String| CliError::new("StartupFailed", what, crate::exit::FAILURE);
    if !dir.join("face-api").is_dir() {
        output::line(&format!(
            "latch: fetching the Face engine's weights ({}) into {}",
            latch_models::FACE_API.package,
            dir.display()
        ));
    }
    latch_models::ensure(&dir, &[latch_models::FACE_API])
        .await
        .map_err(|e| failed(format!("the Face engine's weights: {e}")))?;
    let model = tokio::task::spawn_blocking(move || latch_engine::FaceModel::load(&dir))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))?;
    tracing::info!(target: "latch::serve", models = %models_dir.display(), "built-in Face engine ready");
    Ok(Arc::new(
        latch_engine::Engine::new(model, store, clock, settings.image_urls.clone())
            .with_plain_http(plain_http),
    ))
}

/// The demo client's large person group `demo-staff`, with one person enrolled from a
/// public-domain portrait; what the README's device call identifies. Written to `demo.env`.
pub(super) async fn enroll_demo(
    engine: &latch_engine::Engine,
    models_dir: &Path,
    data_dir: &Path,
    face_url: &str,
) -> Result<(), CliError> {
    let failed = |what: String| CliError::new("StartupFailed", what, crate::exit::FAILURE);
    latch_models::ensure(models_dir, &[latch_models::PHOTOS])
        .await
        .map_err(|e| failed(format!("the demo photos: {e}")))?;
    let photos = models_dir.join("photos");
    let enrolled = std::fs::read(photos.join("obama.jpg"))
        .map_err(|e| failed(format!("the demo photo: {e}")))?;
    let client = ResourceId::parse(DEMO_CLIENT).map_err(|e| CliError::usage(e.to_string()))?;
    let person = engine
        .enroll(
            &client,
            DEMO_GROUP,
            "Demo staff",
            "Barack Obama",
            enrolled.into(),
        )
        .await
        .map_err(|e| failed(format!("enrolling the demo person: {e:?}")))?;
    let path = data_dir.join(DEMO_FILE);
    let mut env = std::fs::read_to_string(&path)
        .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
    env.push_str(&format!(
        "LATCH_FACE={face_url}\nDEMO_GROUP_ID={DEMO_GROUP}\nDEMO_PERSON_ID={person}\nDEMO_PHOTO={}\nDEMO_OTHER_PHOTO={}\n",
        photos.join("obama2.jpg").display(),
        photos.join("biden.jpg").display(),
    ));
    write_private(&path, env.as_bytes(), false)
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(target: "latch::serve", group = DEMO_GROUP, person = %person, "enrolled the demo person");
    Ok(())
}

fn demo_env(
    data_dir: &Path,
    sts_url: &str,
    cacert: Option<&Path>,
    isv: &NewKeys,
    client: &NewKeys,
) -> String {
    format!(
        "# latch demo credentials: secret, readable by the owner only.\n\
         # Load them into a shell with:  set -a; . {dir}/{DEMO_FILE}; set +a\n\
         LATCH_STS={url}\n\
         ISV_RESOURCE_ID={DEMO_ISV}\n\
         ISV_KEY={isv_key}\n\
         ISV_KEY2={isv_key2}\n\
         CLIENT_RESOURCE_ID={DEMO_CLIENT}\n\
         CLIENT_KEY={client_key}\n\
         CLIENT_KEY2={client_key2}\n{cacert}",
        dir = data_dir.display(),
        cacert = cacert
            .map(|p| format!("LATCH_CACERT={}\n", p.display()))
            .unwrap_or_default(),
        url = sts_url,
        isv_key = isv.key1.expose_secret(),
        isv_key2 = isv.key2.expose_secret(),
        client_key = client.key1.expose_secret(),
        client_key2 = client.key2.expose_secret(),
    )
}
