//! `latch face-models fetch`: the built-in Face engine's weights, fetched into a directory
//! ahead of time and checked against their pinned digests, so that `serve` can start on a
//! machine without the network (or from a container image that carries them).

use std::path::PathBuf;

use serde_json::json;

use crate::cli::{FaceModelsCommand, Format};
use crate::config::Config;
use crate::exit;
use crate::output::{self, CliError};

pub(crate) async fn run(
    config: &Config,
    command: FaceModelsCommand,
    format: Format,
) -> Result<(), CliError> {
    let FaceModelsCommand::Fetch { dir } = command;
    let dir: PathBuf = dir.unwrap_or_else(|| config.face.models_dir.clone());
    let artifact = latch_models::FACE_API;
    latch_models::ensure(&dir, &[artifact])
        .await
        .map_err(|e| CliError::new("FetchFailed", e.to_string(), exit::FAILURE))?;
    let files: Vec<_> = artifact
        .members
        .iter()
        .map(|m| json!({"path": dir.join(m.file), "sha256": m.sha256}))
        .collect();
    output::print(
        format,
        &json!({"package": artifact.package, "source": artifact.url, "dir": dir, "files": files}),
        || {
            let mut text = format!(
                "{} ({}), digests checked, in {}:",
                artifact.package,
                artifact.url,
                dir.display()
            );
            for m in artifact.members {
                text.push_str(&format!("\n  {}  {}", m.sha256, m.file));
            }
            text
        },
    );
    Ok(())
}
