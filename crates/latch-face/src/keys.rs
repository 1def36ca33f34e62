//! The verifier the front checks tokens with, shared by the checks and replaceable when the
//! signing keys change.

use std::sync::{Arc, RwLock};

use latch_core::Verifier;

/// The current verifier; cheap to clone.
#[derive(Clone, Debug)]
pub struct Verifiers(Arc<RwLock<Arc<Verifier>>>);

impl Verifiers {
    /// Starts with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Verifiers(Arc::new(RwLock::new(Arc::new(verifier))))
    }

    /// The verifier in force now.
    pub fn current(&self) -> Arc<Verifier> {
        match self.0.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the verifier (new signing keys).
    pub fn replace(&self, verifier: Verifier) {
        let mut slot = match self.0.write() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Arc::new(verifier);
    }
}
