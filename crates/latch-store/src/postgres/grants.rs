//! What a resource is allowed in the PostgreSQL store: ISV issuance with the features it may
//! grant, and the features approved for it directly.

use latch_core::audit::AuditDraft;
use latch_core::{FeatureSet, ResourceId};

use super::resources::load_resource;
use super::{pg, PgStore};
use crate::{Resource, Result};

pub(super) async fn set_isv(
    store: &PgStore,
    id: &ResourceId,
    enabled: bool,
    grants: &FeatureSet,
    audit: &AuditDraft,
) -> Result<Resource> {
    let (id, grants) = (id.clone(), grants.to_csv());
    store
        .change(audit, move |tx| {
            Box::pin(async move {
                load_resource(tx, &id).await?;
                tx.execute(
                    "UPDATE resources SET isv_enabled = $2, isv_grants = $3 WHERE canonical = $1",
                    &[&id.canonical(), &enabled, &grants],
                )
                .await
                .map_err(pg)?;
                load_resource(tx, &id).await
            })
        })
        .await
}

pub(super) async fn set_approvals(
    store: &PgStore,
    id: &ResourceId,
    features: &FeatureSet,
    audit: &AuditDraft,
) -> Result<Resource> {
    let (id, features) = (id.clone(), features.to_csv());
    store
        .change(audit, move |tx| {
            Box::pin(async move {
                load_resource(tx, &id).await?;
                tx.execute(
                    "UPDATE resources SET approvals = $2 WHERE canonical = $1",
                    &[&id.canonical(), &features],
                )
                .await
                .map_err(pg)?;
                load_resource(tx, &id).await
            })
        })
        .await
}
