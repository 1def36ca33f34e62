//! The embedded store's Face data: large person groups, persons, persisted faces, detected
//! faces and operations, each in the database beside the security state.

use async_trait::async_trait;
use latch_core::{ResourceId, UnixTime};
use rusqlite::{params, Connection, OptionalExtension};

use super::{sql, SqliteStore};
use crate::face::{
    self, DetectedFace, FaceData, FaceGroup, FaceLimits, FacePerson, GroupFace, PersistedFace,
    Training,
};
use crate::{Result, StoreError};

const FACE_GROUP_COLUMNS: &str =
    "group_id, name, user_data, recognition_model, created_at, trained_at, trained_faces";

fn face_group_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FaceGroup> {
    let trained_at: Option<i64> = row.get(5)?;
    let trained_faces: Option<i64> = row.get(6)?;
    Ok(FaceGroup {
        group_id: row.get(0)?,
        name: row.get(1)?,
        user_data: row.get(2)?,
        recognition_model: row.get(3)?,
        created_at: UnixTime(row.get(4)?),
        training: trained_at.zip(trained_faces).map(|(at, n)| Training {
            trained_at: UnixTime(at),
            faces_added: n,
        }),
    })
}

/// Persons from rows of `(person_id, name, user_data, face_id)`, ordered by person and then
/// by face: one person per run of rows.
fn face_persons_from(
    rows: Vec<(String, String, Option<String>, Option<String>)>,
) -> Vec<FacePerson> {
    let mut out: Vec<FacePerson> = Vec::new();
    for (person_id, name, user_data, face_id) in rows {
        match out.last_mut() {
            Some(last) if last.person_id == person_id => {}
            _ => out.push(FacePerson {
                person_id,
                name,
                user_data,
                persisted_face_ids: Vec::new(),
            }),
        }
        if let (Some(face_id), Some(last)) = (face_id, out.last_mut()) {
            last.persisted_face_ids.push(face_id);
        }
    }
    out
}

fn face_group_exists(conn: &Connection, resource: &str, group_id: &str) -> Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM face_groups WHERE resource = ?1 AND group_id = ?2)",
    )
    .map_err(sql)?
    .query_row([resource, group_id], |r| r.get(0))
    .map_err(sql)
}

fn face_person_exists(
    conn: &Connection,
    resource: &str,
    group_id: &str,
    person_id: &str,
) -> Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM face_persons WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3)",
    )
    .map_err(sql)?
    .query_row([resource, group_id, person_id], |r| r.get(0))
    .map_err(sql)
}

fn limit(top: usize) -> i64 {
    i64::try_from(top).unwrap_or(i64::MAX)
}

// Face data is the client's, not security state: its writes have no audit record and do not
// count as changes (`changes_here`), and its tables move no state version.
#[async_trait]
impl FaceData for SqliteStore {
    async fn create_face_group(&self, resource: &ResourceId, group: &FaceGroup) -> Result<()> {
        let (resource, g) = (resource.canonical().to_owned(), group.clone());
        self.write(move |tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO face_groups (resource, group_id, name, user_data, recognition_model, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (resource, group_id) DO NOTHING",
                    params![resource, g.group_id, g.name, g.user_data, g.recognition_model, g.created_at.0],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::FaceExists(face::FaceItem::Group));
            }
            Ok(())
        })
        .await
    }

    async fn face_group(&self, resource: &ResourceId, group_id: &str) -> Result<Option<FaceGroup>> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.lookup(move |c| {
            c.prepare_cached(&format!(
                "SELECT {FACE_GROUP_COLUMNS} FROM face_groups WHERE resource = ?1 AND group_id = ?2"
            ))
            .map_err(sql)?
            .query_row([&resource, &group_id], face_group_row)
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn face_groups(
        &self,
        resource: &ResourceId,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FaceGroup>> {
        let (resource, after) = (resource.canonical().to_owned(), after.map(str::to_owned));
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {FACE_GROUP_COLUMNS} FROM face_groups
                     WHERE resource = ?1 AND (?2 IS NULL OR group_id > ?2)
                     ORDER BY group_id LIMIT ?3"
                ))
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![resource, after, limit(top)], face_group_row)
                .map_err(sql)?;
            rows.map(|r| r.map_err(sql)).collect()
        })
        .await
    }

    async fn delete_face_group(&self, resource: &ResourceId, group_id: &str) -> Result<()> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.write(move |tx| {
            for table in ["face_faces", "face_persons"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE resource = ?1 AND group_id = ?2"),
                    [&resource, &group_id],
                )
                .map_err(sql)?;
            }
            let deleted = tx
                .execute(
                    "DELETE FROM face_groups WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id],
                )
                .map_err(sql)?;
            if deleted == 0 {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            Ok(())
        })
        .await
    }

    async fn create_face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person: &FacePerson,
    ) -> Result<()> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        let p = person.clone();
        self.write(move |tx| {
            if !face_group_exists(tx, &resource, &group_id)? {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            let inserted = tx
                .execute(
                    "INSERT INTO face_persons (resource, group_id, person_id, name, user_data)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (resource, group_id, person_id) DO NOTHING",
                    params![resource, group_id, p.person_id, p.name, p.user_data],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::FaceExists(face::FaceItem::Person));
            }
            Ok(())
        })
        .await
    }

    async fn face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<Option<FacePerson>> {
        let (resource, group_id, person_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
        );
        self.lookup(move |c| {
            // One statement: the person and its faces as of one moment.
            let mut stmt = c
                .prepare_cached(
                    "SELECT p.person_id, p.name, p.user_data, f.face_id FROM face_persons p
                     LEFT JOIN face_faces f
                       ON f.resource = p.resource AND f.group_id = p.group_id AND f.person_id = p.person_id
                     WHERE p.resource = ?1 AND p.group_id = ?2 AND p.person_id = ?3
                     ORDER BY f.seq",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([&resource, &group_id, &person_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(sql)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql)?;
            Ok(face_persons_from(rows).into_iter().next())
        })
        .await
    }

    async fn face_persons(
        &self,
        resource: &ResourceId,
        group_id: &str,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FacePerson>> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        let after = after.map(str::to_owned);
        self.read(move |c| {
            // One read transaction: the group and its persons as of one moment.
            let tx = c.unchecked_transaction().map_err(sql)?;
            if !face_group_exists(&tx, &resource, &group_id)? {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT p.person_id, p.name, p.user_data, f.face_id FROM
                       (SELECT person_id, name, user_data FROM face_persons
                        WHERE resource = ?1 AND group_id = ?2 AND (?3 IS NULL OR person_id > ?3)
                        ORDER BY person_id LIMIT ?4) p
                     LEFT JOIN face_faces f
                       ON f.resource = ?1 AND f.group_id = ?2 AND f.person_id = p.person_id
                     ORDER BY p.person_id, f.seq",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![resource, group_id, after, limit(top)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(sql)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql)?;
            Ok(face_persons_from(rows))
        })
        .await
    }

    async fn delete_face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<()> {
        let (resource, group_id, person_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
        );
        self.write(move |tx| {
            if !face_group_exists(tx, &resource, &group_id)? {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            tx.execute(
                "DELETE FROM face_faces WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3",
                [&resource, &group_id, &person_id],
            )
            .map_err(sql)?;
            let deleted = tx
                .execute(
                    "DELETE FROM face_persons WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3",
                    [&resource, &group_id, &person_id],
                )
                .map_err(sql)?;
            if deleted == 0 {
                return Err(StoreError::FaceNotFound(face::FaceItem::Person));
            }
            Ok(())
        })
        .await
    }

    async fn add_persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face: &PersistedFace,
        limits: FaceLimits,
    ) -> Result<()> {
        let (resource, group_id, person_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
        );
        let face = face.clone();
        self.write(move |tx| {
            // The writer's transaction is IMMEDIATE: nothing else changes the group meanwhile.
            let counted = tx
                .execute(
                    "UPDATE face_groups SET faces_added = faces_added + 1 WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id],
                )
                .map_err(sql)?;
            if counted == 0 {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            if !face_person_exists(tx, &resource, &group_id, &person_id)? {
                return Err(StoreError::FaceNotFound(face::FaceItem::Person));
            }
            let (in_group, of_person): (i64, i64) = tx
                .query_row(
                    "SELECT count(*), coalesce(sum(person_id = ?3), 0) FROM face_faces
                     WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id, &person_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql)?;
            limits.allow_another(in_group, of_person)?;
            let seq: i64 = tx
                .query_row(
                    "SELECT faces_added FROM face_groups WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            let inserted = tx
                .execute(
                    "INSERT INTO face_faces (resource, group_id, person_id, face_id, user_data, embedding, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (resource, group_id, person_id, face_id) DO NOTHING",
                    params![resource, group_id, person_id, face.face_id, face.user_data, face.embedding, seq],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::FaceExists(face::FaceItem::PersistedFace));
            }
            Ok(())
        })
        .await
    }

    async fn persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<Option<PersistedFace>> {
        let (resource, group_id, person_id, face_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
            face_id.to_owned(),
        );
        self.lookup(move |c| {
            c.prepare_cached(
                "SELECT face_id, user_data, embedding FROM face_faces
                 WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3 AND face_id = ?4",
            )
            .map_err(sql)?
            .query_row([&resource, &group_id, &person_id, &face_id], |r| {
                Ok(PersistedFace {
                    face_id: r.get(0)?,
                    user_data: r.get(1)?,
                    embedding: r.get(2)?,
                })
            })
            .optional()
            .map_err(sql)
        })
        .await
    }

    async fn delete_persisted_face(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
        face_id: &str,
    ) -> Result<()> {
        let (resource, group_id, person_id, face_id) = (
            resource.canonical().to_owned(),
            group_id.to_owned(),
            person_id.to_owned(),
            face_id.to_owned(),
        );
        self.write(move |tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM face_faces WHERE resource = ?1 AND group_id = ?2 AND person_id = ?3 AND face_id = ?4",
                    [&resource, &group_id, &person_id, &face_id],
                )
                .map_err(sql)?;
            if deleted > 0 {
                return Ok(());
            }
            Err(if !face_group_exists(tx, &resource, &group_id)? {
                StoreError::FaceNotFound(face::FaceItem::Group)
            } else if !face_person_exists(tx, &resource, &group_id, &person_id)? {
                StoreError::FaceNotFound(face::FaceItem::Person)
            } else {
                StoreError::FaceNotFound(face::FaceItem::PersistedFace)
            })
        })
        .await
    }

    async fn train_face_group(
        &self,
        resource: &ResourceId,
        group_id: &str,
        at: UnixTime,
    ) -> Result<Training> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.write(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE face_groups SET trained_at = ?3, trained_faces = faces_added
                     WHERE resource = ?1 AND group_id = ?2",
                    params![resource, group_id, at.0],
                )
                .map_err(sql)?;
            if updated == 0 {
                return Err(StoreError::FaceNotFound(face::FaceItem::Group));
            }
            let faces_added: i64 = tx
                .query_row(
                    "SELECT trained_faces FROM face_groups WHERE resource = ?1 AND group_id = ?2",
                    [&resource, &group_id],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            Ok(Training {
                trained_at: at,
                faces_added,
            })
        })
        .await
    }

    async fn trained_faces(
        &self,
        resource: &ResourceId,
        group_id: &str,
    ) -> Result<Option<(Option<Training>, Vec<GroupFace>)>> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.read(move |c| {
            // One statement: the training and its faces as of one moment. An untrained
            // group's `trained_faces` is NULL, which no `seq` is at most.
            let mut stmt = c
                .prepare_cached(
                    "SELECT g.trained_at, g.trained_faces, f.person_id, f.embedding FROM face_groups g
                     LEFT JOIN face_faces f
                       ON f.resource = g.resource AND f.group_id = g.group_id AND f.seq <= g.trained_faces
                     WHERE g.resource = ?1 AND g.group_id = ?2
                     ORDER BY f.seq",
                )
                .map_err(sql)?;
            let mut rows = stmt.query([&resource, &group_id]).map_err(sql)?;
            let mut out: Option<(Option<Training>, Vec<GroupFace>)> = None;
            while let Some(row) = rows.next().map_err(sql)? {
                let (training, faces) = out.get_or_insert_with(|| (None, Vec::new()));
                let trained_at: Option<i64> = row.get(0).map_err(sql)?;
                let trained_faces: Option<i64> = row.get(1).map_err(sql)?;
                *training = trained_at.zip(trained_faces).map(|(at, n)| Training {
                    trained_at: UnixTime(at),
                    faces_added: n,
                });
                let person_id: Option<String> = row.get(2).map_err(sql)?;
                let embedding: Option<Vec<u8>> = row.get(3).map_err(sql)?;
                if let (Some(person_id), Some(embedding)) = (person_id, embedding) {
                    faces.push(GroupFace {
                        person_id,
                        embedding,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn save_detected_faces(
        &self,
        resource: &ResourceId,
        faces: &[DetectedFace],
        now: UnixTime,
        max_live: usize,
    ) -> Result<()> {
        let (resource, faces) = (resource.canonical().to_owned(), faces.to_vec());
        self.write(move |tx| {
            // Counted up to the bound only: the count costs at most `max_live` index entries.
            let live: i64 = tx
                .query_row(
                    "SELECT count(*) FROM (SELECT 1 FROM face_detected
                     WHERE resource = ?1 AND expires_at > ?2 LIMIT ?3)",
                    params![resource, now.0, i64::try_from(max_live).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            face::within_live_face_ids(live, faces.len(), max_live)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO face_detected (face_id, resource, recognition_model, embedding, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (face_id) DO NOTHING",
                )
                .map_err(sql)?;
            for f in &faces {
                let inserted = stmt
                    .execute(params![f.face_id, resource, f.recognition_model, f.embedding, f.expires_at.0])
                    .map_err(sql)?;
                if inserted == 0 {
                    return Err(StoreError::AlreadyExists(format!("face {}", f.face_id)));
                }
            }
            Ok(())
        })
        .await
    }

    async fn detected_faces(
        &self,
        resource: &ResourceId,
        face_ids: &[String],
        now: UnixTime,
    ) -> Result<Vec<DetectedFace>> {
        let resource = resource.canonical().to_owned();
        let mut ids = face_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |c| {
            // Point lookups by primary key, in id order, in one read transaction.
            let tx = c.unchecked_transaction().map_err(sql)?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT face_id, recognition_model, embedding, expires_at FROM face_detected
                     WHERE face_id = ?1 AND resource = ?2 AND expires_at > ?3",
                )
                .map_err(sql)?;
            let mut out = Vec::new();
            for id in &ids {
                let found = stmt
                    .query_row(params![id, resource, now.0], |r| {
                        Ok(DetectedFace {
                            face_id: r.get(0)?,
                            recognition_model: r.get(1)?,
                            embedding: r.get(2)?,
                            expires_at: UnixTime(r.get(3)?),
                        })
                    })
                    .optional()
                    .map_err(sql)?;
                out.extend(found);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_detected_faces(&self, now: UnixTime) -> Result<u64> {
        self.write(move |tx| {
            let n = tx
                .execute("DELETE FROM face_detected WHERE expires_at <= ?1", [now.0])
                .map_err(sql)?;
            Ok(n as u64)
        })
        .await
    }

    async fn record_face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()> {
        let (resource, id) = (resource.canonical().to_owned(), operation_id.to_owned());
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM face_operations WHERE resource = ?1 AND created_at < ?2",
                params![resource, forget_before.0],
            )
            .map_err(sql)?;
            let inserted = tx
                .execute(
                    "INSERT INTO face_operations (operation_id, resource, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (operation_id) DO NOTHING",
                    params![id, resource, at.0],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("operation {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
    ) -> Result<Option<UnixTime>> {
        let (resource, id) = (resource.canonical().to_owned(), operation_id.to_owned());
        self.lookup(move |c| {
            c.prepare_cached(
                "SELECT created_at FROM face_operations WHERE operation_id = ?1 AND resource = ?2",
            )
            .map_err(sql)?
            .query_row([&id, &resource], |r| r.get(0).map(UnixTime))
            .optional()
            .map_err(sql)
        })
        .await
    }
}
