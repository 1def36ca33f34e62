//! The PostgreSQL store's Face data: large person groups, persons, persisted faces, detected
//! faces and operations, shared by every replica.

use async_trait::async_trait;
use latch_core::{ResourceId, UnixTime};
use tokio_postgres::{Row, Transaction};

use super::{pg, PgStore};
use crate::face::{
    self, DetectedFace, FaceData, FaceGroup, FaceLimits, FacePerson, GroupFace, PersistedFace,
    Training,
};
use crate::{Result, StoreError};

const FACE_GROUP_COLUMNS: &str =
    "group_id, name, user_data, recognition_model, created_at, trained_at, trained_faces";

fn face_group_row(row: &Row) -> Result<FaceGroup> {
    let trained_at: Option<i64> = row.try_get(5).map_err(pg)?;
    let trained_faces: Option<i64> = row.try_get(6).map_err(pg)?;
    Ok(FaceGroup {
        group_id: row.try_get(0).map_err(pg)?,
        name: row.try_get(1).map_err(pg)?,
        user_data: row.try_get(2).map_err(pg)?,
        recognition_model: row.try_get(3).map_err(pg)?,
        created_at: UnixTime(row.try_get(4).map_err(pg)?),
        training: training(trained_at, trained_faces),
    })
}

fn training(trained_at: Option<i64>, trained_faces: Option<i64>) -> Option<Training> {
    trained_at.zip(trained_faces).map(|(at, n)| Training {
        trained_at: UnixTime(at),
        faces_added: n,
    })
}

/// Persons from rows of `(person_id, name, user_data, face_id)`, ordered by person and then
/// by face: one person per run of rows.
fn face_persons_from(rows: &[Row]) -> Result<Vec<FacePerson>> {
    let mut out: Vec<FacePerson> = Vec::new();
    for row in rows {
        let person_id: String = row.try_get(0).map_err(pg)?;
        if out.last().is_none_or(|last| last.person_id != person_id) {
            out.push(FacePerson {
                person_id,
                name: row.try_get(1).map_err(pg)?,
                user_data: row.try_get(2).map_err(pg)?,
                persisted_face_ids: Vec::new(),
            });
        }
        let face_id: Option<String> = row.try_get(3).map_err(pg)?;
        if let (Some(face_id), Some(last)) = (face_id, out.last_mut()) {
            last.persisted_face_ids.push(face_id);
        }
    }
    Ok(out)
}

fn detected_face_row(row: &Row) -> Result<DetectedFace> {
    Ok(DetectedFace {
        face_id: row.try_get(0).map_err(pg)?,
        recognition_model: row.try_get(1).map_err(pg)?,
        embedding: row.try_get(2).map_err(pg)?,
        expires_at: UnixTime(row.try_get(3).map_err(pg)?),
    })
}

async fn face_group_exists(tx: &Transaction<'_>, resource: &str, group_id: &str) -> Result<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM face_groups WHERE resource = $1 AND group_id = $2)",
            &[&resource, &group_id],
        )
        .await
        .map_err(pg)?
        .get(0))
}

async fn face_person_exists(
    tx: &Transaction<'_>,
    resource: &str,
    group_id: &str,
    person_id: &str,
) -> Result<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM face_persons WHERE resource = $1 AND group_id = $2 AND person_id = $3)",
            &[&resource, &group_id, &person_id],
        )
        .await
        .map_err(pg)?
        .get(0))
}

fn limit(top: usize) -> i64 {
    i64::try_from(top).unwrap_or(i64::MAX)
}

// Face data is the client's, not security state: its writes have no audit record and do not
// count as changes (`changes_here`), and its tables move no state version.
#[async_trait]
impl FaceData for PgStore {
    async fn create_face_group(&self, resource: &ResourceId, group: &FaceGroup) -> Result<()> {
        let (resource, g) = (resource.canonical().to_owned(), group.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let inserted = tx
                    .execute(
                        "INSERT INTO face_groups (resource, group_id, name, user_data, recognition_model, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (resource, group_id) DO NOTHING",
                        &[&resource, &g.group_id, &g.name, &g.user_data, &g.recognition_model, &g.created_at.0],
                    )
                    .await
                    .map_err(pg)?;
                if inserted == 0 {
                    return Err(StoreError::FaceExists(face::FaceItem::Group));
                }
                Ok(())
            })
        })
        .await
    }

    async fn face_group(&self, resource: &ResourceId, group_id: &str) -> Result<Option<FaceGroup>> {
        self.query_opt(
            &format!(
                "SELECT {FACE_GROUP_COLUMNS} FROM face_groups WHERE resource = $1 AND group_id = $2"
            ),
            &[&resource.canonical(), &group_id],
        )
        .await?
        .as_ref()
        .map(face_group_row)
        .transpose()
    }

    async fn face_groups(
        &self,
        resource: &ResourceId,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FaceGroup>> {
        self.query(
            &format!(
                "SELECT {FACE_GROUP_COLUMNS} FROM face_groups
                 WHERE resource = $1 AND ($2::TEXT IS NULL OR group_id > $2::TEXT)
                 ORDER BY group_id LIMIT $3"
            ),
            &[&resource.canonical(), &after, &limit(top)],
        )
        .await?
        .iter()
        .map(face_group_row)
        .collect()
    }

    async fn delete_face_group(&self, resource: &ResourceId, group_id: &str) -> Result<()> {
        let (resource, group_id) = (resource.canonical().to_owned(), group_id.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                for table in ["face_faces", "face_persons"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE resource = $1 AND group_id = $2"),
                        &[&resource, &group_id],
                    )
                    .await
                    .map_err(pg)?;
                }
                let deleted = tx
                    .execute(
                        "DELETE FROM face_groups WHERE resource = $1 AND group_id = $2",
                        &[&resource, &group_id],
                    )
                    .await
                    .map_err(pg)?;
                if deleted == 0 {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Group));
                }
                Ok(())
            })
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
            Box::pin(async move {
                // Holds the group until the commit: a deletion of it waits, or went first.
                let group = tx
                    .query_opt(
                        "SELECT 1 FROM face_groups WHERE resource = $1 AND group_id = $2 FOR KEY SHARE",
                        &[&resource, &group_id],
                    )
                    .await
                    .map_err(pg)?;
                if group.is_none() {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Group));
                }
                let inserted = tx
                    .execute(
                        "INSERT INTO face_persons (resource, group_id, person_id, name, user_data)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (resource, group_id, person_id) DO NOTHING",
                        &[&resource, &group_id, &p.person_id, &p.name, &p.user_data],
                    )
                    .await
                    .map_err(pg)?;
                if inserted == 0 {
                    return Err(StoreError::FaceExists(face::FaceItem::Person));
                }
                Ok(())
            })
        })
        .await
    }

    async fn face_person(
        &self,
        resource: &ResourceId,
        group_id: &str,
        person_id: &str,
    ) -> Result<Option<FacePerson>> {
        // One statement: the person and its faces as of one moment.
        let rows = self
            .query(
                "SELECT p.person_id, p.name, p.user_data, f.face_id FROM face_persons p
                 LEFT JOIN face_faces f
                   ON f.resource = p.resource AND f.group_id = p.group_id AND f.person_id = p.person_id
                 WHERE p.resource = $1 AND p.group_id = $2 AND p.person_id = $3
                 ORDER BY f.seq",
                &[&resource.canonical(), &group_id, &person_id],
            )
            .await?;
        Ok(face_persons_from(&rows)?.into_iter().next())
    }

    async fn face_persons(
        &self,
        resource: &ResourceId,
        group_id: &str,
        after: Option<&str>,
        top: usize,
    ) -> Result<Vec<FacePerson>> {
        // One statement: the group's existence (`g`), and its persons with their faces, as of
        // one moment. A group without persons gives one row of NULLs.
        let rows = self
            .query(
                "SELECT p.person_id, p.name, p.user_data, f.face_id FROM face_groups g
                 LEFT JOIN LATERAL
                   (SELECT person_id, name, user_data FROM face_persons
                    WHERE resource = g.resource AND group_id = g.group_id
                      AND ($3::TEXT IS NULL OR person_id > $3::TEXT)
                    ORDER BY person_id LIMIT $4) p ON TRUE
                 LEFT JOIN face_faces f
                   ON f.resource = g.resource AND f.group_id = g.group_id AND f.person_id = p.person_id
                 WHERE g.resource = $1 AND g.group_id = $2
                 ORDER BY p.person_id, f.seq",
                &[&resource.canonical(), &group_id, &after, &limit(top)],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::FaceNotFound(face::FaceItem::Group));
        };
        if first.try_get::<_, Option<String>>(0).map_err(pg)?.is_none() {
            return Ok(Vec::new());
        }
        face_persons_from(&rows)
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
            Box::pin(async move {
                if !face_group_exists(tx, &resource, &group_id).await? {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Group));
                }
                tx.execute(
                    "DELETE FROM face_faces WHERE resource = $1 AND group_id = $2 AND person_id = $3",
                    &[&resource, &group_id, &person_id],
                )
                .await
                .map_err(pg)?;
                let deleted = tx
                    .execute(
                        "DELETE FROM face_persons WHERE resource = $1 AND group_id = $2 AND person_id = $3",
                        &[&resource, &group_id, &person_id],
                    )
                    .await
                    .map_err(pg)?;
                if deleted == 0 {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Person));
                }
                Ok(())
            })
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
            Box::pin(async move {
                // Counting locks the group's row until the commit: adds to one group take
                // turns, so the count of the person's faces below cannot go stale.
                let Some(counted) = tx
                    .query_opt(
                        "UPDATE face_groups SET faces_added = faces_added + 1
                         WHERE resource = $1 AND group_id = $2 RETURNING faces_added",
                        &[&resource, &group_id],
                    )
                    .await
                    .map_err(pg)?
                else {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Group));
                };
                let seq: i64 = counted.try_get(0).map_err(pg)?;
                if !face_person_exists(tx, &resource, &group_id, &person_id).await? {
                    return Err(StoreError::FaceNotFound(face::FaceItem::Person));
                }
                let counts = tx
                    .query_one(
                        "SELECT count(*), count(*) FILTER (WHERE person_id = $3) FROM face_faces
                         WHERE resource = $1 AND group_id = $2",
                        &[&resource, &group_id, &person_id],
                    )
                    .await
                    .map_err(pg)?;
                limits.allow_another(counts.get(0), counts.get(1))?;
                let inserted = tx
                    .execute(
                        "INSERT INTO face_faces (resource, group_id, person_id, face_id, user_data, embedding, seq)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (resource, group_id, person_id, face_id) DO NOTHING",
                        &[&resource, &group_id, &person_id, &face.face_id, &face.user_data, &face.embedding, &seq],
                    )
                    .await
                    .map_err(pg)?;
                if inserted == 0 {
                    return Err(StoreError::FaceExists(face::FaceItem::PersistedFace));
                }
                Ok(())
            })
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
        self.query_opt(
            "SELECT face_id, user_data, embedding FROM face_faces
             WHERE resource = $1 AND group_id = $2 AND person_id = $3 AND face_id = $4",
            &[&resource.canonical(), &group_id, &person_id, &face_id],
        )
        .await?
        .map(|r| {
            Ok(PersistedFace {
                face_id: r.try_get(0).map_err(pg)?,
                user_data: r.try_get(1).map_err(pg)?,
                embedding: r.try_get(2).map_err(pg)?,
            })
        })
        .transpose()
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
            Box::pin(async move {
                let deleted = tx
                    .execute(
                        "DELETE FROM face_faces WHERE resource = $1 AND group_id = $2 AND person_id = $3 AND face_id = $4",
                        &[&resource, &group_id, &person_id, &face_id],
                    )
                    .await
                    .map_err(pg)?;
                if deleted > 0 {
                    return Ok(());
                }
                Err(if !face_group_exists(tx, &resource, &group_id).await? {
                    StoreError::FaceNotFound(face::FaceItem::Group)
                } else if !face_person_exists(tx, &resource, &group_id, &person_id).await? {
                    StoreError::FaceNotFound(face::FaceItem::Person)
                } else {
                    StoreError::FaceNotFound(face::FaceItem::PersistedFace)
                })
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
        let conn = self.inner.pool.get().await?;
        let row = conn
            .client()?
            .query_opt(
                "UPDATE face_groups SET trained_at = $3, trained_faces = faces_added
                 WHERE resource = $1 AND group_id = $2 RETURNING trained_faces",
                &[&resource.canonical(), &group_id, &at.0],
            )
            .await
            .map_err(pg)?
            .ok_or(StoreError::FaceNotFound(face::FaceItem::Group))?;
        Ok(Training {
            trained_at: at,
            faces_added: row.try_get(0).map_err(pg)?,
        })
    }

    async fn trained_faces(
        &self,
        resource: &ResourceId,
        group_id: &str,
    ) -> Result<Option<(Option<Training>, Vec<GroupFace>)>> {
        // One statement: the training and its faces as of one moment. An untrained group's
        // `trained_faces` is NULL, which no `seq` is at most.
        let rows = self
            .query(
                "SELECT g.trained_at, g.trained_faces, f.person_id, f.embedding FROM face_groups g
                 LEFT JOIN face_faces f
                   ON f.resource = g.resource AND f.group_id = g.group_id AND f.seq <= g.trained_faces
                 WHERE g.resource = $1 AND g.group_id = $2
                 ORDER BY f.seq",
                &[&resource.canonical(), &group_id],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let trained = training(first.try_get(0).map_err(pg)?, first.try_get(1).map_err(pg)?);
        let mut faces = Vec::with_capacity(rows.len());
        for row in &rows {
            let person_id: Option<String> = row.try_get(2).map_err(pg)?;
            let embedding: Option<Vec<u8>> = row.try_get(3).map_err(pg)?;
            if let (Some(person_id), Some(embedding)) = (person_id, embedding) {
                faces.push(GroupFace {
                    person_id,
                    embedding,
                });
            }
        }
        Ok(Some((trained, faces)))
    }

    async fn save_detected_faces(
        &self,
        resource: &ResourceId,
        faces: &[DetectedFace],
        now: UnixTime,
        max_live: usize,
    ) -> Result<()> {
        if faces.is_empty() {
            return Ok(());
        }
        let (resource, faces) = (resource.canonical().to_owned(), faces.to_vec());
        let bound = i64::try_from(max_live).unwrap_or(i64::MAX);
        self.write(move |tx| {
            Box::pin(async move {
                // Counted up to the bound only: the count costs at most `max_live` index entries.
                let live: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM (SELECT 1 FROM face_detected
                         WHERE resource = $1 AND expires_at > $2 LIMIT $3) AS live",
                        &[&resource, &now.0, &bound],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                face::within_live_face_ids(live, faces.len(), max_live)?;
                let insert = tx
                    .prepare(
                        "INSERT INTO face_detected (face_id, resource, recognition_model, embedding, expires_at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (face_id) DO NOTHING",
                    )
                    .await
                    .map_err(pg)?;
                for f in &faces {
                    let inserted = tx
                        .execute(
                            &insert,
                            &[&f.face_id, &resource, &f.recognition_model, &f.embedding, &f.expires_at.0],
                        )
                        .await
                        .map_err(pg)?;
                    if inserted == 0 {
                        return Err(StoreError::AlreadyExists(format!("face {}", f.face_id)));
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn detected_faces(
        &self,
        resource: &ResourceId,
        face_ids: &[String],
        now: UnixTime,
    ) -> Result<Vec<DetectedFace>> {
        if face_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.query(
            "SELECT face_id, recognition_model, embedding, expires_at FROM face_detected
             WHERE face_id = ANY($2) AND resource = $1 AND expires_at > $3
             ORDER BY face_id",
            &[&resource.canonical(), &face_ids, &now.0],
        )
        .await?
        .iter()
        .map(detected_face_row)
        .collect()
    }

    async fn prune_detected_faces(&self, now: UnixTime) -> Result<u64> {
        let conn = self.inner.pool.get().await?;
        conn.client()?
            .execute(
                "DELETE FROM face_detected WHERE expires_at <= $1",
                &[&now.0],
            )
            .await
            .map_err(pg)
    }

    async fn record_face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()> {
        let conn = self.inner.pool.get().await?;
        let client = conn.client()?;
        client
            .execute(
                "DELETE FROM face_operations WHERE resource = $1 AND created_at < $2",
                &[&resource.canonical(), &forget_before.0],
            )
            .await
            .map_err(pg)?;
        let inserted = client
            .execute(
                "INSERT INTO face_operations (operation_id, resource, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (operation_id) DO NOTHING",
                &[&operation_id, &resource.canonical(), &at.0],
            )
            .await
            .map_err(pg)?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(format!(
                "operation {operation_id}"
            )));
        }
        Ok(())
    }

    async fn face_operation(
        &self,
        resource: &ResourceId,
        operation_id: &str,
    ) -> Result<Option<UnixTime>> {
        let conn = self.inner.pool.get().await?;
        Ok(conn
            .client()?
            .query_opt(
                "SELECT created_at FROM face_operations WHERE operation_id = $1 AND resource = $2",
                &[&operation_id, &resource.canonical()],
            )
            .await
            .map_err(pg)?
            .map(|row| UnixTime(row.get(0))))
    }
}
