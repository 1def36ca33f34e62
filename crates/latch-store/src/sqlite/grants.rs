//! What a resource is allowed in the embedded store: ISV issuance with the features it may
//! grant, and the features approved for it directly.

use latch_core::audit::AuditDraft;
use latch_core::{FeatureSet, ResourceId};
use rusqlite::params;

use super::resources::must_exist;
use super::{sql, SqliteStore};
use crate::{Resource, Result};

pub(super) async fn set_isv(
    store: &SqliteStore,
    id: &ResourceId,
    enabled: bool,
    grants: &FeatureSet,
    audit: &AuditDraft,
) -> Result<Resource> {
    let (id, grants) = (id.clone(), grants.clone());
    store
        .change(audit, move |tx| {
            must_exist(tx, &id)?;
            tx.execute(
                "UPDATE resources SET isv_enabled = ?2, isv_grants = ?3 WHERE canonical = ?1",
                params![id.canonical(), enabled, grants.to_csv()],
            )
            .map_err(sql)?;
            must_exist(tx, &id)
        })
        .await
}

pub(super) async fn set_approvals(
    store: &SqliteStore,
    id: &ResourceId,
    features: &FeatureSet,
    audit: &AuditDraft,
) -> Result<Resource> {
    let (id, features) = (id.clone(), features.clone());
    store
        .change(audit, move |tx| {
            must_exist(tx, &id)?;
            tx.execute(
                "UPDATE resources SET approvals = ?2 WHERE canonical = ?1",
                params![id.canonical(), features.to_csv()],
            )
            .map_err(sql)?;
            must_exist(tx, &id)
        })
        .await
}
