//! The Face engine's data ([`crate::face::FaceData`]), on every backend.

use latch_core::{ResourceId, UnixTime};

use super::{id, Fixture, CHAIN, CLIENT, ISV};
use crate::face::{
    self, DetectedFace, FaceGroup, FaceLimits, FacePerson, GroupFace, PersistedFace, Training,
};
use crate::{Store, StoreError};

const MAX: FaceLimits = FaceLimits::per_person(248);

fn group(group_id: &str) -> FaceGroup {
    FaceGroup {
        group_id: group_id.to_owned(),
        name: format!("group {group_id}"),
        user_data: Some(format!("data of {group_id}")),
        recognition_model: "recognition_04".to_owned(),
        created_at: UnixTime(5_000),
        training: None,
    }
}

fn person(person_id: &str) -> FacePerson {
    FacePerson {
        person_id: person_id.to_owned(),
        name: format!("person {person_id}"),
        user_data: None,
        persisted_face_ids: Vec::new(),
    }
}

fn persisted(face_id: &str) -> PersistedFace {
    PersistedFace {
        face_id: face_id.to_owned(),
        user_data: Some(format!("face {face_id}")),
        embedding: embedding(face_id),
    }
}

/// A distinct embedding per face, with every byte value in it (BLOB/BYTEA round trip).
fn embedding(face_id: &str) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(face_id.as_bytes());
    bytes
}

fn detected(face_id: &str, expires_at: i64) -> DetectedFace {
    DetectedFace {
        face_id: face_id.to_owned(),
        recognition_model: "recognition_04".to_owned(),
        embedding: embedding(face_id),
        expires_at: UnixTime(expires_at),
    }
}

fn ids(groups: &[FaceGroup]) -> Vec<&str> {
    groups.iter().map(|g| g.group_id.as_str()).collect()
}

fn person_ids(persons: &[FacePerson]) -> Vec<&str> {
    persons.iter().map(|p| p.person_id.as_str()).collect()
}

fn faces_of(faces: &[GroupFace]) -> Vec<(&str, Vec<u8>)> {
    faces
        .iter()
        .map(|f| (f.person_id.as_str(), f.embedding.clone()))
        .collect()
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: crate::Result<T>, what: face::FaceItem) {
    match result {
        Err(StoreError::FaceNotFound(item)) => assert_eq!(item, what),
        other => panic!("expected FaceNotFound({what}), got {other:?}"),
    }
}

/// A group `g` of `resource` with persons `p1` (faces `f1`, `f2`) and `p2` (face `f3`).
async fn populated(store: &dyn Store, resource: &ResourceId, g: &str) {
    store.create_face_group(resource, &group(g)).await.unwrap();
    for p in ["p1", "p2"] {
        store
            .create_face_person(resource, g, &person(p))
            .await
            .unwrap();
    }
    for (p, f) in [("p1", "f1"), ("p1", "f2"), ("p2", "f3")] {
        store
            .add_persisted_face(resource, g, p, &persisted(f), MAX)
            .await
            .unwrap();
    }
}

async fn groups_are_created_read_listed_in_pages_and_deleted(f: Fixture) {
    let store = f.store.as_ref();
    let isv = id(ISV);
    assert_eq!(store.face_group(&isv, "x1").await.unwrap(), None);
    assert!(store.face_groups(&isv, None, 10).await.unwrap().is_empty());

    // Training given at creation is ignored: a new group is untrained.
    let mut trained = group("x1");
    trained.training = Some(Training {
        trained_at: UnixTime(1),
        faces_added: 7,
    });
    store.create_face_group(&isv, &trained).await.unwrap();
    let mut untitled = group("y");
    untitled.user_data = None;
    for g in [group("x_3"), untitled.clone(), group("x-2")] {
        store.create_face_group(&isv, &g).await.unwrap();
    }
    assert_eq!(
        store.face_group(&isv, "x1").await.unwrap(),
        Some(group("x1"))
    );
    assert_eq!(store.face_group(&isv, "y").await.unwrap(), Some(untitled));

    // Id order, byte by byte, on every backend.
    let all = store.face_groups(&isv, None, 10).await.unwrap();
    assert_eq!(ids(&all), ["x-2", "x1", "x_3", "y"]);
    assert_eq!(all[1], group("x1"));
    let first = store.face_groups(&isv, None, 2).await.unwrap();
    assert_eq!(ids(&first), ["x-2", "x1"]);
    let next = store.face_groups(&isv, Some("x1"), 2).await.unwrap();
    assert_eq!(ids(&next), ["x_3", "y"]);
    assert!(store
        .face_groups(&isv, Some("y"), 2)
        .await
        .unwrap()
        .is_empty());
    // `after` need not name a group.
    let between = store.face_groups(&isv, Some("x0"), 10).await.unwrap();
    assert_eq!(ids(&between), ["x1", "x_3", "y"]);
    assert!(store.face_groups(&isv, None, 0).await.unwrap().is_empty());

    store.delete_face_group(&isv, "x1").await.unwrap();
    assert_eq!(store.face_group(&isv, "x1").await.unwrap(), None);
    let left = store.face_groups(&isv, None, 10).await.unwrap();
    assert_eq!(ids(&left), ["x-2", "x_3", "y"]);
    assert_not_found(
        store.delete_face_group(&isv, "x1").await,
        face::FaceItem::Group,
    );
}

async fn a_duplicate_group_is_refused_and_each_resource_sees_only_its_own(f: Fixture) {
    let store = f.store.as_ref();
    let (isv, client) = (id(ISV), id(CLIENT));
    populated(store, &isv, "g").await;
    let mut other = group("g");
    other.name = "another".into();
    assert!(matches!(
        store.create_face_group(&isv, &other).await,
        Err(StoreError::FaceExists(_))
    ));
    assert_eq!(
        store.face_group(&isv, "g").await.unwrap().unwrap().name,
        "group g"
    );

    // The other resource has no group `g`: it cannot read, list, change or delete the ISV's.
    assert_eq!(store.face_group(&client, "g").await.unwrap(), None);
    assert!(store
        .face_groups(&client, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_not_found(
        store.face_persons(&client, "g", None, 10).await,
        face::FaceItem::Group,
    );
    assert_eq!(store.face_person(&client, "g", "p1").await.unwrap(), None);
    assert_eq!(
        store
            .persisted_face(&client, "g", "p1", "f1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.trained_faces(&client, "g").await.unwrap(), None);
    assert_not_found(
        store.create_face_person(&client, "g", &person("p9")).await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store
            .add_persisted_face(&client, "g", "p1", &persisted("f9"), MAX)
            .await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.delete_persisted_face(&client, "g", "p1", "f1").await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.delete_face_person(&client, "g", "p1").await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.train_face_group(&client, "g", UnixTime(6_000)).await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.delete_face_group(&client, "g").await,
        face::FaceItem::Group,
    );

    // The same id is free for it, and its group is a separate one.
    store.create_face_group(&client, &other).await.unwrap();
    assert!(store
        .face_persons(&client, "g", None, 10)
        .await
        .unwrap()
        .is_empty());
    store.delete_face_group(&client, "g").await.unwrap();
    let isv_group = store.face_group(&isv, "g").await.unwrap().unwrap();
    assert_eq!(isv_group.name, "group g");
    let persons = store.face_persons(&isv, "g", None, 10).await.unwrap();
    assert_eq!(person_ids(&persons), ["p1", "p2"]);

    // A spelling of the resource id in another case is the same resource.
    let upper = id(&ISV.to_uppercase());
    assert_eq!(
        store.face_group(&upper, "g").await.unwrap(),
        Some(isv_group)
    );
}

async fn persons_are_created_read_listed_and_deleted_with_their_faces(f: Fixture) {
    let store = f.store.as_ref();
    let isv = id(ISV);
    populated(store, &isv, "g").await;
    store
        .create_face_person(&isv, "g", &person("p0"))
        .await
        .unwrap();

    let p1 = store.face_person(&isv, "g", "p1").await.unwrap().unwrap();
    assert_eq!(
        p1,
        FacePerson {
            persisted_face_ids: vec!["f1".into(), "f2".into()],
            ..person("p1")
        }
    );
    // Given face ids are ignored, and ids are unique within the group.
    let mut with_faces = person("p3");
    with_faces.user_data = Some("three".into());
    with_faces.persisted_face_ids = vec!["bogus".into()];
    store
        .create_face_person(&isv, "g", &with_faces)
        .await
        .unwrap();
    let p3 = store.face_person(&isv, "g", "p3").await.unwrap().unwrap();
    assert!(p3.persisted_face_ids.is_empty());
    assert_eq!(p3.user_data.as_deref(), Some("three"));
    assert!(matches!(
        store.create_face_person(&isv, "g", &person("p1")).await,
        Err(StoreError::FaceExists(_))
    ));

    // Pages in id order, each person with its faces in the order they were added.
    store
        .add_persisted_face(&isv, "g", "p1", &persisted("a0"), MAX)
        .await
        .unwrap();
    let all = store.face_persons(&isv, "g", None, 10).await.unwrap();
    assert_eq!(person_ids(&all), ["p0", "p1", "p2", "p3"]);
    assert_eq!(all[1].persisted_face_ids, ["f1", "f2", "a0"]);
    assert_eq!(all[2].persisted_face_ids, ["f3"]);
    assert!(all[0].persisted_face_ids.is_empty());
    let page = store.face_persons(&isv, "g", Some("p0"), 2).await.unwrap();
    assert_eq!(page, all[1..3].to_vec());
    let last = store.face_persons(&isv, "g", Some("p2"), 2).await.unwrap();
    assert_eq!(person_ids(&last), ["p3"]);
    assert!(store
        .face_persons(&isv, "g", Some("p3"), 2)
        .await
        .unwrap()
        .is_empty());

    let face = store
        .persisted_face(&isv, "g", "p1", "f2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(face, persisted("f2"));
    assert_eq!(
        store.persisted_face(&isv, "g", "p2", "f2").await.unwrap(),
        None,
        "a face is found under its own person only"
    );

    // A face leaves alone; a person leaves with its faces.
    store
        .delete_persisted_face(&isv, "g", "p1", "f1")
        .await
        .unwrap();
    assert_eq!(
        store.persisted_face(&isv, "g", "p1", "f1").await.unwrap(),
        None
    );
    let p1 = store.face_person(&isv, "g", "p1").await.unwrap().unwrap();
    assert_eq!(p1.persisted_face_ids, ["f2", "a0"]);
    store.delete_face_person(&isv, "g", "p1").await.unwrap();
    assert_eq!(store.face_person(&isv, "g", "p1").await.unwrap(), None);
    assert_eq!(
        store.persisted_face(&isv, "g", "p1", "f2").await.unwrap(),
        None
    );
    // A person of the same id starts with no faces.
    store
        .create_face_person(&isv, "g", &person("p1"))
        .await
        .unwrap();
    let again = store.face_person(&isv, "g", "p1").await.unwrap().unwrap();
    assert!(again.persisted_face_ids.is_empty());

    // A group leaves with its persons and faces: one made again under its id is empty.
    store.delete_face_group(&isv, "g").await.unwrap();
    assert_eq!(store.face_person(&isv, "g", "p2").await.unwrap(), None);
    store.create_face_group(&isv, &group("g")).await.unwrap();
    assert!(store
        .face_persons(&isv, "g", None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.persisted_face(&isv, "g", "p2", "f3").await.unwrap(),
        None
    );
    let (training, faces) = store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert_eq!(training, None);
    assert!(faces.is_empty());
}

async fn missing_groups_persons_and_faces_are_named(f: Fixture) {
    let store = f.store.as_ref();
    let isv = id(ISV);
    // No group.
    assert_not_found(
        store.face_persons(&isv, "g", None, 10).await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.create_face_person(&isv, "g", &person("p1")).await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.delete_face_person(&isv, "g", "p1").await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store
            .add_persisted_face(&isv, "g", "p1", &persisted("f1"), MAX)
            .await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.delete_persisted_face(&isv, "g", "p1", "f1").await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.train_face_group(&isv, "g", UnixTime(6_000)).await,
        face::FaceItem::Group,
    );
    assert_not_found(
        store.delete_face_group(&isv, "g").await,
        face::FaceItem::Group,
    );
    assert_eq!(store.trained_faces(&isv, "g").await.unwrap(), None);
    assert_eq!(store.face_person(&isv, "g", "p1").await.unwrap(), None);
    assert_eq!(
        store.persisted_face(&isv, "g", "p1", "f1").await.unwrap(),
        None
    );

    // A group, no person.
    populated(store, &isv, "g").await;
    assert_not_found(
        store.delete_face_person(&isv, "g", "p9").await,
        face::FaceItem::Person,
    );
    assert_not_found(
        store
            .add_persisted_face(&isv, "g", "p9", &persisted("f9"), MAX)
            .await,
        face::FaceItem::Person,
    );
    assert_not_found(
        store.delete_persisted_face(&isv, "g", "p9", "f1").await,
        face::FaceItem::Person,
    );
    assert_eq!(store.face_person(&isv, "g", "p9").await.unwrap(), None);

    // A person, no face.
    assert_not_found(
        store.delete_persisted_face(&isv, "g", "p1", "f9").await,
        face::FaceItem::PersistedFace,
    );
    assert_not_found(
        store.delete_persisted_face(&isv, "g", "p1", "f3").await,
        face::FaceItem::PersistedFace,
    );
    assert_eq!(
        store.persisted_face(&isv, "g", "p1", "f9").await.unwrap(),
        None
    );
    // A face id is unique within its person.
    assert!(matches!(
        store
            .add_persisted_face(&isv, "g", "p1", &persisted("f1"), MAX)
            .await,
        Err(StoreError::FaceExists(_))
    ));
    // Nothing failed half-way.
    let p1 = store.face_person(&isv, "g", "p1").await.unwrap().unwrap();
    assert_eq!(p1.persisted_face_ids, ["f1", "f2"]);
    let training = store
        .train_face_group(&isv, "g", UnixTime(6_000))
        .await
        .unwrap();
    assert_eq!(training.faces_added, 3, "failed adds count no face");
}

async fn a_person_takes_faces_up_to_its_limit(f: Fixture) {
    let store = f.store.as_ref();
    let isv = id(ISV);
    populated(store, &isv, "g").await;
    // p1 has 2 faces: a third is the last under a limit of 3.
    store
        .add_persisted_face(&isv, "g", "p1", &persisted("f4"), FaceLimits::per_person(3))
        .await
        .unwrap();
    let refused = store
        .add_persisted_face(&isv, "g", "p1", &persisted("f5"), FaceLimits::per_person(3))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Refused(_))),
        "{refused:?}"
    );
    // Per person: p2 (1 face) may still take one.
    store
        .add_persisted_face(&isv, "g", "p2", &persisted("f5"), FaceLimits::per_person(2))
        .await
        .unwrap();
    // A face deleted frees its place.
    store
        .delete_persisted_face(&isv, "g", "p1", "f1")
        .await
        .unwrap();
    store
        .add_persisted_face(&isv, "g", "p1", &persisted("f6"), FaceLimits::per_person(3))
        .await
        .unwrap();
    let p1 = store.face_person(&isv, "g", "p1").await.unwrap().unwrap();
    assert_eq!(p1.persisted_face_ids, ["f2", "f4", "f6"]);
    // The refused add counted nothing: 3 faces at first, then f4, f5 and f6.
    let training = store
        .train_face_group(&isv, "g", UnixTime(6_000))
        .await
        .unwrap();
    assert_eq!(training.faces_added, 6);
}

async fn a_group_takes_faces_up_to_its_limit(f: Fixture) {
    let store = f.store.as_ref();
    let isv = id(ISV);
    store.create_face_group(&isv, &group("g")).await.unwrap();
    for p in ["p1", "p2"] {
        store
            .create_face_person(&isv, "g", &person(p))
            .await
            .unwrap();
    }
    let limits = FaceLimits {
        per_person: 248,
        per_group: 3,
    };
    for (p, face) in [("p1", "f1"), ("p1", "f2"), ("p2", "f3")] {
        store
            .add_persisted_face(&isv, "g", p, &persisted(face), limits)
            .await
            .unwrap();
    }
    // Full, whichever person the face is for; nothing is added.
    for p in ["p1", "p2"] {
        assert!(matches!(
            store
                .add_persisted_face(&isv, "g", p, &persisted("f4"), limits)
                .await,
            Err(StoreError::Refused(m)) if m.contains("group")
        ));
    }
    assert!(store
        .persisted_face(&isv, "g", "p1", "f4")
        .await
        .unwrap()
        .is_none());
    // Another group is not this one.
    store.create_face_group(&isv, &group("h")).await.unwrap();
    store
        .create_face_person(&isv, "h", &person("p1"))
        .await
        .unwrap();
    store
        .add_persisted_face(&isv, "h", "p1", &persisted("f4"), limits)
        .await
        .unwrap();
    // A deleted face makes room.
    store
        .delete_persisted_face(&isv, "g", "p2", "f3")
        .await
        .unwrap();
    store
        .add_persisted_face(&isv, "g", "p2", &persisted("f4"), limits)
        .await
        .unwrap();
}

async fn a_resource_holds_a_bounded_number_of_live_face_ids(f: Fixture) {
    let store = f.store.as_ref();
    let (isv, client) = (id(ISV), id(CLIENT));
    let now = UnixTime(1_000);
    store
        .save_detected_faces(
            &isv,
            &[
                detected("a", 1_500),
                detected("b", 1_500),
                detected("c", 3_000),
            ],
            now,
            4,
        )
        .await
        .unwrap();
    // Two more would make five: refused whole, nothing saved.
    assert!(matches!(
        store
            .save_detected_faces(&isv, &[detected("d", 3_000), detected("e", 3_000)], now, 4)
            .await,
        Err(StoreError::Refused(_))
    ));
    let asked: Vec<String> = ["d", "e"].map(String::from).to_vec();
    assert!(store
        .detected_faces(&isv, &asked, now)
        .await
        .unwrap()
        .is_empty());
    // One fits; another resource counts its own.
    store
        .save_detected_faces(&isv, &[detected("d", 3_000)], now, 4)
        .await
        .unwrap();
    store
        .save_detected_faces(&client, &[detected("x", 3_000)], now, 1)
        .await
        .unwrap();
    // Expired ones do not count, pruned or not: at 1,500, a and b have expired.
    store
        .save_detected_faces(
            &isv,
            &[detected("e", 3_000), detected("f", 3_000)],
            UnixTime(1_500),
            4,
        )
        .await
        .unwrap();
}

async fn concurrent_adds_keep_the_limit_and_count_each_face_once(f: Fixture) {
    let isv = id(ISV);
    populated(f.store.as_ref(), &isv, "g").await;
    let adds = (0..8).map(|i| {
        let (store, isv) = (f.store.clone(), isv.clone());
        tokio::spawn(async move {
            store
                .add_persisted_face(
                    &isv,
                    "g",
                    "p2",
                    &persisted(&format!("c{i}")),
                    FaceLimits::per_person(5),
                )
                .await
        })
    });
    let mut added = 0;
    for add in adds.collect::<Vec<_>>() {
        match add.await.unwrap() {
            Ok(()) => added += 1,
            Err(StoreError::Refused(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(added, 4, "p2 had one face; the limit is 5");
    let p2 = f.store.face_person(&isv, "g", "p2").await.unwrap().unwrap();
    assert_eq!(p2.persisted_face_ids.len(), 5);
    let training = f
        .store
        .train_face_group(&isv, "g", UnixTime(6_000))
        .await
        .unwrap();
    assert_eq!(training.faces_added, 7);
    let (_, faces) = f.store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert_eq!(faces.len(), 7);
}

async fn training_snapshots_the_faces_added_so_far(f: Fixture) {
    let store = f.store.as_ref();
    let isv = id(ISV);
    populated(store, &isv, "g").await;
    // Untrained: the group, no training, no faces.
    let (training, faces) = store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert_eq!(training, None);
    assert!(faces.is_empty());
    assert_eq!(
        store.face_group(&isv, "g").await.unwrap().unwrap().training,
        None
    );

    let first = store
        .train_face_group(&isv, "g", UnixTime(6_000))
        .await
        .unwrap();
    assert_eq!(
        first,
        Training {
            trained_at: UnixTime(6_000),
            faces_added: 3
        }
    );
    assert_eq!(
        store.face_group(&isv, "g").await.unwrap().unwrap().training,
        Some(first)
    );
    let (training, faces) = store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert_eq!(training, Some(first));
    assert_eq!(
        faces_of(&faces),
        [
            ("p1", embedding("f1")),
            ("p1", embedding("f2")),
            ("p2", embedding("f3"))
        ]
    );

    // A face added after training waits for the next one.
    store
        .add_persisted_face(&isv, "g", "p2", &persisted("f4"), MAX)
        .await
        .unwrap();
    let (training, faces) = store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert_eq!(training, Some(first));
    assert_eq!(faces.len(), 3);
    assert!(!faces.iter().any(|f| f.embedding == embedding("f4")));

    // A deleted face or person leaves at once, without training.
    store.delete_face_person(&isv, "g", "p1").await.unwrap();
    let (_, faces) = store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert_eq!(faces_of(&faces), [("p2", embedding("f3"))]);
    store
        .delete_persisted_face(&isv, "g", "p2", "f3")
        .await
        .unwrap();
    let (_, faces) = store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert!(faces.is_empty());

    // Training again takes f4 in.
    let second = store
        .train_face_group(&isv, "g", UnixTime(7_000))
        .await
        .unwrap();
    assert_eq!(
        second,
        Training {
            trained_at: UnixTime(7_000),
            faces_added: 4
        }
    );
    let (training, faces) = store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert_eq!(training, Some(second));
    assert_eq!(faces_of(&faces), [("p2", embedding("f4"))]);
    // Another group's training is its own.
    store.create_face_group(&isv, &group("h")).await.unwrap();
    let (training, faces) = store.trained_faces(&isv, "h").await.unwrap().unwrap();
    assert_eq!(training, None);
    assert!(faces.is_empty());
}

async fn detected_faces_expire_at_their_time_and_stay_with_their_resource(f: Fixture) {
    let store = f.store.as_ref();
    let (isv, client) = (id(ISV), id(CLIENT));
    store
        .save_detected_faces(
            &isv,
            &[
                detected("d1", 1_000),
                detected("d2", 1_001),
                detected("d3", 2_000),
            ],
            UnixTime(0),
            usize::MAX,
        )
        .await
        .unwrap();
    store
        .save_detected_faces(&client, &[detected("d4", 2_000)], UnixTime(0), usize::MAX)
        .await
        .unwrap();
    store
        .save_detected_faces(&client, &[], UnixTime(0), usize::MAX)
        .await
        .unwrap();
    let asked: Vec<String> = ["d3", "d1", "d2", "d4", "unknown", "d3"]
        .map(String::from)
        .to_vec();

    // Before expiry, all of the resource's own, each once; the other's is absent.
    let found = store
        .detected_faces(&isv, &asked, UnixTime(999))
        .await
        .unwrap();
    let mut names: Vec<&str> = found.iter().map(|d| d.face_id.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["d1", "d2", "d3"]);
    let d1 = found.iter().find(|d| d.face_id == "d1").unwrap();
    assert_eq!(d1, &detected("d1", 1_000));

    // At its expiry a face is gone; a second before, it is there.
    let at = store
        .detected_faces(&isv, &asked, UnixTime(1_000))
        .await
        .unwrap();
    let mut names: Vec<&str> = at.iter().map(|d| d.face_id.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["d2", "d3"]);
    let client_faces = store
        .detected_faces(&client, &asked, UnixTime(1_000))
        .await
        .unwrap();
    assert_eq!(client_faces, [detected("d4", 2_000)]);
    assert!(store
        .detected_faces(&isv, &[], UnixTime(0))
        .await
        .unwrap()
        .is_empty());

    // Many ids at once.
    let many: Vec<DetectedFace> = (0..1_000)
        .map(|i| detected(&format!("m{i:04}"), 3_000))
        .collect();
    store
        .save_detected_faces(&isv, &many, UnixTime(0), usize::MAX)
        .await
        .unwrap();
    let wanted: Vec<String> = many.iter().map(|d| d.face_id.clone()).collect();
    let found = store
        .detected_faces(&isv, &wanted, UnixTime(2_500))
        .await
        .unwrap();
    assert_eq!(found.len(), 1_000);
    assert!(store
        .detected_faces(&client, &wanted, UnixTime(2_500))
        .await
        .unwrap()
        .is_empty());

    // Pruning forgets exactly the faces expired at its time, of every resource.
    assert_eq!(store.prune_detected_faces(UnixTime(999)).await.unwrap(), 0);
    assert_eq!(
        store.prune_detected_faces(UnixTime(1_001)).await.unwrap(),
        2
    );
    assert_eq!(
        store.prune_detected_faces(UnixTime(1_001)).await.unwrap(),
        0
    );
    let left = store
        .detected_faces(&isv, &asked, UnixTime(0))
        .await
        .unwrap();
    assert_eq!(left, [detected("d3", 2_000)]);
    assert_eq!(
        store.prune_detected_faces(UnixTime(2_000)).await.unwrap(),
        2
    );
    assert_eq!(
        store.prune_detected_faces(UnixTime(3_000)).await.unwrap(),
        1_000
    );
}

async fn face_data_is_neither_audited_nor_state(f: Fixture) {
    let store = f.store.as_ref();
    let isv = id(ISV);
    let (version, changes) = (store.state_version().await.unwrap(), store.changes_here());
    let records = store.audit_records(CHAIN, 0, 1_000).await.unwrap().len();
    populated(store, &isv, "g").await;
    store
        .train_face_group(&isv, "g", UnixTime(6_000))
        .await
        .unwrap();
    store
        .delete_persisted_face(&isv, "g", "p1", "f1")
        .await
        .unwrap();
    store.delete_face_person(&isv, "g", "p2").await.unwrap();
    store.delete_face_group(&isv, "g").await.unwrap();
    store
        .save_detected_faces(&isv, &[detected("d1", 1_000)], UnixTime(0), usize::MAX)
        .await
        .unwrap();
    store.prune_detected_faces(UnixTime(2_000)).await.unwrap();
    assert_eq!(store.state_version().await.unwrap(), version);
    assert_eq!(store.changes_here(), changes);
    assert_eq!(
        store.audit_records(CHAIN, 0, 1_000).await.unwrap().len(),
        records
    );
}

async fn face_data_survives_reopening_and_passes_through_the_outage_wrapper(f: Fixture) {
    let isv = id(ISV);
    populated(f.store.as_ref(), &isv, "g").await;
    f.store
        .train_face_group(&isv, "g", UnixTime(6_000))
        .await
        .unwrap();
    let reopened = f.reopen().await;
    let wrapped = crate::stale::StaleIfError::new(
        reopened,
        std::sync::Arc::new(latch_core::FixedClock::at(UnixTime(6_000))),
        60,
    );
    let store: &dyn Store = &wrapped;
    assert_eq!(
        store
            .face_group(&isv, "g")
            .await
            .unwrap()
            .unwrap()
            .training
            .map(|t| t.faces_added),
        Some(3)
    );
    let (_, faces) = store.trained_faces(&isv, "g").await.unwrap().unwrap();
    assert_eq!(faces.len(), 3);
    store
        .create_face_person(&isv, "g", &person("p3"))
        .await
        .unwrap();
    store
        .add_persisted_face(&isv, "g", "p3", &persisted("f4"), MAX)
        .await
        .unwrap();
    let page = store.face_persons(&isv, "g", Some("p2"), 10).await.unwrap();
    assert_eq!(page[0].persisted_face_ids, ["f4"]);
    assert_not_found(
        store.delete_face_person(&isv, "g", "p9").await,
        face::FaceItem::Person,
    );
    assert_eq!(wrapped.stale_answers(), 0);
    // Seen through the first handle too.
    assert!(f
        .store
        .persisted_face(&isv, "g", "p3", "f4")
        .await
        .unwrap()
        .is_some());
}

async fn operations_are_the_resources_own_and_forgotten_when_old(f: Fixture) {
    let store = f.store.as_ref();
    let (isv, client) = (id(ISV), id(CLIENT));
    store
        .record_face_operation(&isv, "op-1", UnixTime(1_000), UnixTime(0))
        .await
        .unwrap();
    assert_eq!(
        store.face_operation(&isv, "op-1").await.unwrap(),
        Some(UnixTime(1_000))
    );
    // Another resource does not see it, and an id is never reused.
    assert_eq!(store.face_operation(&client, "op-1").await.unwrap(), None);
    assert!(matches!(
        store
            .record_face_operation(&client, "op-1", UnixTime(1_001), UnixTime(0))
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.face_operation(&isv, "op-2").await.unwrap(), None);
    // Recording forgets the resource's operations older than the bound, not others'.
    store
        .record_face_operation(&client, "op-c", UnixTime(1_000), UnixTime(0))
        .await
        .unwrap();
    store
        .record_face_operation(&isv, "op-2", UnixTime(2_000), UnixTime(1_001))
        .await
        .unwrap();
    assert_eq!(store.face_operation(&isv, "op-1").await.unwrap(), None);
    assert_eq!(
        store.face_operation(&isv, "op-2").await.unwrap(),
        Some(UnixTime(2_000))
    );
    assert_eq!(
        store.face_operation(&client, "op-c").await.unwrap(),
        Some(UnixTime(1_000))
    );
}

on_every_backend!(
    operations_are_the_resources_own_and_forgotten_when_old,
    groups_are_created_read_listed_in_pages_and_deleted,
    a_duplicate_group_is_refused_and_each_resource_sees_only_its_own,
    persons_are_created_read_listed_and_deleted_with_their_faces,
    missing_groups_persons_and_faces_are_named,
    a_person_takes_faces_up_to_its_limit,
    a_group_takes_faces_up_to_its_limit,
    a_resource_holds_a_bounded_number_of_live_face_ids,
    concurrent_adds_keep_the_limit_and_count_each_face_once,
    training_snapshots_the_faces_added_so_far,
    detected_faces_expire_at_their_time_and_stay_with_their_resource,
    face_data_is_neither_audited_nor_state,
    face_data_survives_reopening_and_passes_through_the_outage_wrapper,
);
