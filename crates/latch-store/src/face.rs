//! The built-in Face engine's data: large person groups, their persons and persisted faces,
//! and the faces `detect` remembered under a `faceId` for a while.
//!
//! Everything belongs to one Face resource (the caller's): a group id names a group only
//! within its resource, so one resource never sees, lists or changes another's groups.
//!
//! Face data is the client's own data, not security state: it is not audited record by record
//! (the call that carried it is, at the front, when it bore a limited access token), and it
//! does not move the state version the checks cache by.
//!
//! Training: each group counts the faces ever added to it (`faces_added`); each face keeps the
//! count at which it was added. Training stores the count of the moment, and identification
//! uses the faces added up to it, so a face added after training waits for the next one, as
//! in Azure. A deleted person or face leaves at once.
//!
//! Operations (trainings) are remembered in the store, so a caller polling another replica
//! than the one that trained still finds its operation.
//!
//! A missing row is [`crate::StoreError::FaceNotFound`] and a duplicate one
//! [`crate::StoreError::FaceExists`], each naming the [`FaceItem`], so the engine can answer
//! each in Azure's words.

use async_trait::async_trait;
use latch_core::{ResourceId, UnixTime};

use crate::Result;

/// What a Face data error names: the kind of row that is missing, or already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaceItem {
    /// A large person group.
    Group,
    /// A person of a group.
    Person,
    /// A persisted face of a person.
    PersistedFace,
}

impl std::fmt::Display for FaceItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FaceItem::Group => "large person group",
            FaceItem::Person => "person",
            FaceItem::PersistedFace => "persisted face",
        })
    }
}

/// A large person group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaceGroup {
    /// `largePersonGroupId`, unique within its resource.
    pub group_id: String,
    /// Its display name.
    pub name: String,
    /// The caller's data, as given.
    pub user_data: Option<String>,
    /// The recognition model its faces were computed with.
    pub recognition_model: String,
    /// When it was created.
    pub created_at: UnixTime,
    /// Its last training, if any.
    pub training: Option<Training>,
}

/// A group's last training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Training {
    /// When it ran.
    pub trained_at: UnixTime,
    /// How many faces had been added to the group then: identification uses those.
    pub faces_added: i64,
}

/// A person of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FacePerson {
    /// `personId`, a UUID.
    pub person_id: String,
    /// Its display name.
    pub name: String,
    /// The caller's data, as given.
    pub user_data: Option<String>,
    /// Its faces' ids, in the order they were added (ignored when creating).
    pub persisted_face_ids: Vec<String>,
}

/// A face added to a person: its embedding, never the image.
#[derive(Clone, PartialEq, Eq)]
pub struct PersistedFace {
    /// `persistedFaceId`, a UUID.
    pub face_id: String,
    /// The caller's data, as given.
    pub user_data: Option<String>,
    /// The face's embedding, as the engine encodes it.
    pub embedding: Vec<u8>,
}

impl std::fmt::Debug for PersistedFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistedFace")
            .field("face_id", &self.face_id)
            .field("user_data", &self.user_data)
            .field("embedding_bytes", &self.embedding.len())
            .finish()
    }
}

/// A face `detect` found, remembered under its `faceId` until it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct DetectedFace {
    /// `faceId`, a UUID.
    pub face_id: String,
    /// The recognition model its embedding was computed with.
    pub recognition_model: String,
    /// The face's embedding, as the engine encodes it.
    pub embedding: Vec<u8>,
    /// When the `faceId` stops naming it (`faceIdTimeToLive` after detection).
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for DetectedFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectedFace")
            .field("face_id", &self.face_id)
            .field("recognition_model", &self.recognition_model)
            .field("embedding_bytes", &self.embedding.len())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One face of a trained group, as identification reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupFace {
    /// Whose face it is.
    pub person_id: String,
    /// Its embedding.
    pub embedding: Vec<u8>,
}

impl std::fmt::Debug for GroupFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupFace")
            .field("person_id", &self.person_id)
            .field("embedding_bytes", &self.embedding.len())
            .finish()
    }
}

/// How many faces a person, and a group, may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaceLimits {
    /// Faces per person.
    pub per_person: usize,
    /// Faces per group, all persons together.
    pub per_group: usize,
}

impl FaceLimits {
    /// Whether one more face fits a group holding `in_group` faces, `of_person` of them the
    /// person's; what a full person or group answers. Both backends ask it inside the
    /// transaction that adds the face.
    pub(crate) fn allow_another(&self, in_group: i64, of_person: i64) -> Result<()> {
        let count = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
        if count(of_person) >= self.per_person {
            return Err(crate::StoreError::Refused(format!(
                "the person already has {} faces, the most a person may have",
                self.per_person
            )));
        }
        if count(in_group) >= self.per_group {
            return Err(crate::StoreError::Refused(format!(
                "the large person group already has {} faces, the most a group may have",
                self.per_group
            )));
        }
        Ok(())
    }

    /// `per_person` faces a person, no bound on the group.
    pub const fn per_person(per_person: usize) -> FaceLimits {
        FaceLimits {
            per_person,
            per_group: usize::MAX,
        }
    }
}

/// Whether `adding` more face ids fit a resource holding `live`; what a full one answers.
/// Both backends ask it inside the transaction that adds the faces.
pub(crate) fn within_live_face_ids(live: i64, adding: usize, max_live: usize) -> Result<()> {
    let live = usize::try_from(live).unwrap_or(usize::MAX);
    if live.saturating_add(adding) > max_live {
        return Err(crate::StoreError::Refused(format!(
            "the resource already holds {live} face ids that have not expired, and may hold {max_live}; shorten faceIdTimeToLive or wait"
        )));
    }
    Ok(())
}

/// The engine's data, per resource. Implemented by both backends.
#[async_trait]
pub trait FaceData: Send + Sync {
    /// Creates a group (`training` is ignored: a new group is untrained).
    /// [`crate::StoreError::AlreadyExists`] if the resource has one by that id.
    async fn create_face_group(&self, resource: &ResourceId, group: &FaceGroup) -> Result<()>;

    /// One group, if it exists.
    async fn face_group(&self, resource: &ResourceId, group_id: &str) -> Result<Option<FaceGroup>>;

    /// The resource's groups in id order, those after `after` (exclusive), at most `top`.
    async fn face_groups(
        &self,
        resource: &ResourceId,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FaceGroup>>;

    /// Deletes a group with its persons and faces.
    async fn delete_face_group(&self, resource: &ResourceId, group_id: &str) -> Result<()>;

    /// Adds a person to a group (its `persisted_face_ids` are ignored).
    async fn create_face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person: &FacePerson,
    ) -> Result<()>;

    /// One person with its face ids, if it exists.
    async fn face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<Option<FacePerson>>;

    /// A group's persons in id order, those after `after` (exclusive), at most `top`.
    /// [`crate::StoreError::FaceNotFound`] ([`FaceItem::Group`]) if the group does not exist.
    async fn face_persons(
        &self,
        resource: &ResourceId,
        group_id: &str,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FacePerson>>;

    /// Deletes a person with its faces.
    async fn delete_face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<()>;

    /// Adds a face to a person. [`crate::StoreError::Refused`] if the person, or the group,
    /// already holds as many faces as `limits` allow.
    async fn add_persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face: &PersistedFace,
        limits: FaceLimits,
    ) -> Result<()>;

    /// One persisted face, if it exists.
    async fn persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<Option<PersistedFace>>;

    /// Deletes a persisted face.
    async fn delete_persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<()>;

    /// Trains a group at `at`: identification will use the faces added so far.
    async fn train_face_group(
        &self,
        resource: &ResourceId,
        group_id: &str,
        at: UnixTime,
    ) -> Result<Training>;

    /// A trained group's faces as of its training: `None` if the group does not exist,
    /// `Some((None, []))` if it was never trained.
    async fn trained_faces(
        &self,
        resource: &ResourceId,
        group_id: &str,
    ) -> Result<Option<(Option<Training>, Vec<GroupFace>)>>;

    /// Remembers detected faces for the resource. [`crate::StoreError::Refused`], and nothing
    /// saved, if the resource would then hold more than `max_live` face ids unexpired at `now`
    /// (concurrent saves may overshoot by what they save together).
    async fn save_detected_faces(
        &self,
        resource: &ResourceId,
        faces: &[DetectedFace],
        now: UnixTime,
        max_live: usize,
    ) -> Result<()>;

    /// The resource's detected faces among `face_ids` that have not expired at `now`; an
    /// unknown, expired or other resource's id is simply absent.
    async fn detected_faces(
        &self,
        resource: &ResourceId,
        face_ids: &[String],
        now: UnixTime,
    ) -> Result<Vec<DetectedFace>>;

    /// Forgets detected faces expired at `now`; returns how many.
    async fn prune_detected_faces(&self, now: UnixTime) -> Result<u64>;

    /// Remembers that the resource's long-running operation (a training) `operation_id` ran
    /// at `at`, so any replica can answer its status; forgets the resource's operations older
    /// than `forget_before`. [`crate::StoreError::AlreadyExists`] if the id is taken.
    async fn record_face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()>;

    /// When the resource's operation `operation_id` ran, if it is remembered.
    async fn face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
    ) -> Result<Option<UnixTime>>;
}
