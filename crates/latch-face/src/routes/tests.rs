use std::collections::HashSet;

use super::*;
use crate::ids::route_param;

const G: &str = "g1";
const P: &str = "c5c24a82-6845-4031-9d5d-978df9175426";
const F: &str = "015839fb-fbd9-4f79-ace9-7675fc2f1dd9";
const O: &str = "7d0fe9e6-2a4c-4f8e-9a57-0c1f44b6d1a0";

/// A path of `route` under `version`, with sample ids.
pub(crate) fn sample_path(version: &str, route: &Route) -> String {
    let rest = route
        .path
        .replace("{largePersonGroupId}", G)
        .replace("{personId}", P)
        .replace("{persistedFaceId}", F)
        .replace("{operationId}", O);
    format!("/face/{version}/{rest}")
}

const ALL_VERBS: [Verb; 4] = [Verb::Get, Verb::Put, Verb::Post, Verb::Delete];

#[test]
fn every_route_and_method_round_trips_in_every_version() {
    for v in VERSIONS {
        for route in &ROUTES {
            let path = sample_path(v, route);
            let (found, op, version) =
                classify(&route.verb.method(), &path, Some("returnFaceId=false")).unwrap();
            assert_eq!((found, op, version), (route, route.operation, v), "{path}");
            for verb in ALL_VERBS {
                let other = ROUTES
                    .iter()
                    .find(|r| r.verb == verb && r.path == route.path);
                assert_eq!(
                    classify(&verb.method(), &path, None).map(|(r, ..)| r),
                    other,
                    "{verb:?} {path}"
                );
            }
            for method in [Method::HEAD, Method::PATCH, Method::OPTIONS] {
                assert_eq!(classify(&method, &path, None), None, "{method} {path}");
            }
        }
    }
}

#[test]
fn the_table_names_each_operation_once_and_each_method_and_path_once() {
    let ops: HashSet<Operation> = ROUTES.iter().map(|r| r.operation).collect();
    assert_eq!(ops.len(), ROUTES.len());
    let keys: HashSet<(Verb, &str)> = ROUTES.iter().map(|r| (r.verb, r.path)).collect();
    assert_eq!(keys.len(), ROUTES.len());
    // Every operation is reached; detect asking for face ids through `detect`'s route.
    for op in Operation::ALL {
        assert!(
            ops.contains(&op) || op == Operation::DetectWithFaceId,
            "{op}"
        );
    }
}

#[test]
fn classifies_every_route_and_version() {
    for v in VERSIONS {
        let p = |rest: &str| format!("/face/{v}/{rest}");
        let c =
            |m: Method, rest: &str, q: Option<&str>| classify(&m, &p(rest), q).map(|(_, o, _)| o);
        assert_eq!(c(Method::POST, "identify", None), Some(Operation::Identify));
        assert_eq!(c(Method::POST, "verify", None), Some(Operation::Verify));
        assert_eq!(
            c(Method::POST, "findsimilars", None),
            Some(Operation::FindSimilar)
        );
        assert_eq!(
            c(Method::POST, "detect", None),
            Some(Operation::DetectWithFaceId)
        );
        assert_eq!(
            c(Method::POST, "detect", Some("returnFaceId=true")),
            Some(Operation::DetectWithFaceId)
        );
        assert_eq!(
            c(Method::POST, "detect", Some("returnFaceId=False")),
            Some(Operation::Detect)
        );
        assert_eq!(
            c(
                Method::POST,
                "detect",
                Some("returnFaceId=false&returnFaceId=false")
            ),
            Some(Operation::DetectWithFaceId)
        );
        assert_eq!(
            c(Method::GET, "largepersongroups", None),
            Some(Operation::ListGroups)
        );
        assert_eq!(
            c(Method::PUT, "largepersongroups/g1", None),
            Some(Operation::CreateGroup)
        );
        assert_eq!(
            c(
                Method::POST,
                "largepersongroups/g1/persons/p/persistedfaces",
                None
            ),
            Some(Operation::AddFace)
        );
        assert_eq!(
            c(Method::GET, "largepersongroups/g1/training", None),
            Some(Operation::TrainingStatus)
        );
        // An empty id is the id's check to refuse.
        assert_eq!(
            c(Method::GET, "largepersongroups//persons", None),
            Some(Operation::ListPersons)
        );
        // A group may be called `operations` or `persistedfaces`: ids are by position.
        assert_eq!(
            c(Method::GET, "largepersongroups/operations/persons", None),
            Some(Operation::ListPersons)
        );
        assert_eq!(c(Method::GET, "identify", None), None);
    }
}

#[test]
fn unknown_paths_are_no_route() {
    for path in [
        "/face/v9/identify",
        "/face/v1.0/identify/x",
        "/face/v1.0/identify/",
        "/face/v1.0/Identify",
        "/sts/v1.0/identify",
        "/face/v1.0",
        "/face/v1.0/",
        "/face//identify",
        "/face/v1.0/largepersongroups/g1/persons/p/persistedfaces/f/x",
        "/face/v1.0/operations",
        "/face/v1.0/largepersongroups/g1/train/x",
        "",
        "/",
    ] {
        for verb in ALL_VERBS {
            assert_eq!(
                classify(&verb.method(), path, None),
                None,
                "{verb:?} {path}"
            );
        }
    }
}

#[test]
fn ids_are_read_where_the_pattern_names_them() {
    let by_op = |op: Operation| ROUTES.iter().find(|r| r.operation == op).unwrap();
    let face = by_op(Operation::GetFace);
    let path = sample_path("v1.2", face);
    assert_eq!(route_param(face, &path, "{largePersonGroupId}"), Some(G));
    assert_eq!(route_param(face, &path, "{personId}"), Some(P));
    assert_eq!(route_param(face, &path, "{persistedFaceId}"), Some(F));
    assert_eq!(route_param(face, &path, "{operationId}"), None);
    let operation = by_op(Operation::GetOperation);
    assert_eq!(
        route_param(operation, &sample_path("v1.0", operation), "{operationId}"),
        Some(O)
    );
    assert_eq!(
        route_param(operation, "/face/v1.0/operations/%41", "{operationId}"),
        Some("%41")
    );
}
