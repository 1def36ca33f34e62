//! latch administration: who may ask what, and the one place where it is done.
//!
//! * [`request::AdminRequest`]: every administrative request, as data;
//! * [`Caller`] and [`authorize`]: the three credentials and what each may do;
//! * [`execute`]: runs an authorized request against the store (each change is committed
//!   with its audit record by the store) and returns its JSON answer, a function per request
//!   in a module per domain (`execute/`);
//! * [`http::router`]: the admin HTTP API, `POST /admin/v1/{op}`.
//!
//! The command line runs the same [`execute`] on the local store (as the local operator), or
//! sends the same request to the API, so both print the same JSON.
//!
//! | caller | credential | may |
//! |---|---|---|
//! | operator | `Authorization: Bearer <operator token>` | everything |
//! | auditor | `Authorization: Bearer <auditor token>` | read: resources, key slots, signing keys (and the audit log) |
//! | ISV | `Ocp-Apim-Subscription-Key` of an enabled ISV resource | its own resource and keys, its own client blocks, revoking its own tokens |
//!
//! Any other resource key (a client's) is refused, and so is every request the caller's row
//! does not allow: 403 with a message that says which.

use std::sync::Arc;

use latch_audit::AuditError;
use latch_core::audit::{Actor, KeySlot};
use latch_core::{Clock, ResourceId};
use latch_store::{Resource, Store, StoreError};
use ring::rand::SecureRandom;
use serde_json::{json, Value};

pub mod csv;
mod execute;
pub mod http;
pub mod request;

pub use execute::execute;

pub use request::AdminRequest;

/// Who is asking.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The operator, through the command line on the store itself.
    LocalOperator,
    /// The operator, through the API.
    Operator,
    /// The auditor.
    Auditor,
    /// An ISV, by one of its resource's keys.
    Isv {
        /// Its resource.
        resource: Box<Resource>,
        /// The key it used.
        slot: KeySlot,
    },
}

impl Caller {
    fn actor(&self) -> Actor {
        match self {
            Caller::LocalOperator => Actor::LocalOperator,
            Caller::Operator => Actor::Operator,
            // The auditor changes nothing, so it is never an actor of a change.
            Caller::Auditor => Actor::Anonymous,
            Caller::Isv { resource, slot } => Actor::Resource {
                resource: resource.id.clone(),
                slot: *slot,
            },
        }
    }
}

/// A refused or failed administrative request.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminError {
    /// No valid credential.
    Unauthorized,
    /// The credential may not make this request; the message says why.
    Forbidden(String),
    /// The request is malformed.
    BadRequest(String),
    /// What it names does not exist.
    NotFound(String),
    /// What it creates exists.
    Conflict(String),
    /// The store failed.
    Unavailable,
}

/// The audit log fails as the store does (it is kept there), and is answered alike.
impl From<AuditError> for AdminError {
    fn from(e: AuditError) -> Self {
        StoreError::from(e).into()
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::FaceNotFound(_) => {
                AdminError::NotFound(e.to_string())
            }
            StoreError::AlreadyExists(_) | StoreError::FaceExists(_) => {
                AdminError::Conflict(e.to_string())
            }
            StoreError::Refused(why) => AdminError::Forbidden(why),
            StoreError::Unavailable(_) | StoreError::Corrupt(_) | StoreError::Internal(_) => {
                tracing::error!(target: "latch::admin", error = %e, "store call failed");
                AdminError::Unavailable
            }
        }
    }
}

/// Whether `caller` may make `request`. ISV requests that name a token are checked again by
/// [`execute`], which knows who issued it.
pub fn authorize(caller: &Caller, request: &AdminRequest) -> Result<(), AdminError> {
    let forbid = |why: &str| Err(AdminError::Forbidden(why.to_owned()));
    match caller {
        Caller::LocalOperator | Caller::Operator => Ok(()),
        Caller::Auditor if request.is_read_only() => Ok(()),
        Caller::Isv { .. }
            if matches!(
                request,
                AdminRequest::ReadAudit { .. }
                    | AdminRequest::QueryAudit { .. }
                    | AdminRequest::Checkpoint { .. }
            ) =>
        {
            forbid("the audit log is for the operator and the auditor")
        }
        Caller::Auditor => forbid("the auditor credential is read-only"),
        Caller::Isv { resource, .. } => {
            let own = |id: &ResourceId| *id == resource.id;
            match request {
                AdminRequest::ShowResource { resource_id }
                | AdminRequest::ListKeys { resource_id }
                | AdminRequest::RegenerateKey { resource_id, .. }
                    if own(resource_id) =>
                {
                    Ok(())
                }
                AdminRequest::ShowResource { .. }
                | AdminRequest::ListKeys { .. }
                | AdminRequest::RegenerateKey { .. } => {
                    forbid("an ISV may manage only its own resource and keys")
                }
                AdminRequest::BlockClient {
                    isv_resource_id, ..
                }
                | AdminRequest::UnblockClient {
                    isv_resource_id, ..
                } => {
                    if isv_resource_id.as_ref().is_none_or(own) {
                        Ok(())
                    } else {
                        forbid("an ISV may block and unblock clients only for itself")
                    }
                }
                AdminRequest::RevokeToken { .. } | AdminRequest::RevokeTarget { .. } => Ok(()),
                _ => forbid("this request is the operator's"),
            }
        }
    }
}

/// What [`execute`] needs.
#[derive(Clone)]
pub struct Context {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Randomness for keys.
    pub rng: Arc<dyn SecureRandom + Send + Sync>,
    /// The audit key and signed heads (outside the store).
    pub audit: Arc<latch_audit::signer::AuditSigner>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// A resource's JSON form.
pub fn resource_json(r: &Resource) -> Value {
    json!({
        "id": r.id.as_str(),
        "createdAt": r.created_at.to_rfc3339(),
        "isvEnabled": r.isv_enabled,
        "isvGrants": r.isv_grants,
        "approvals": r.approvals,
        "authMode": r.auth_mode.as_str(),
    })
}

#[cfg(test)]
mod tests;
