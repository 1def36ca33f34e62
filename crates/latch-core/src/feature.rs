//! Limited Access feature flags.
//!
//! A [`FeatureSet`] is an ordered set, so claims, audit records and messages list flags in one
//! deterministic order. Capping what an ISV may grant is set algebra: a request is allowed when
//! it is a subset of the ISV's grants, and refused otherwise; we never narrow a request silently,
//! because a client that asked for a feature and got a token without it would fail later, at the
//! Face front, far from the cause.
//!
//! Flag names are matched ignoring ASCII case (`face.identification` is
//! `Face.Identification`) and always written in their canonical spelling.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One Limited Access feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// `Face.Identification`: identify, find similar faces.
    FaceIdentification,
    /// `Face.Verification`: verify one face against another or a person.
    FaceVerification,
    /// `LimitedAccess.HighRisk`.
    LimitedAccessHighRisk,
}

impl Feature {
    /// Every known feature, in canonical order.
    pub const ALL: [Feature; 3] = [
        Feature::FaceIdentification,
        Feature::FaceVerification,
        Feature::LimitedAccessHighRisk,
    ];

    /// The flag as it appears on the wire and in claims.
    pub const fn as_str(self) -> &'static str {
        match self {
            Feature::FaceIdentification => "Face.Identification",
            Feature::FaceVerification => "Face.Verification",
            Feature::LimitedAccessHighRisk => "LimitedAccess.HighRisk",
        }
    }

    /// The short name Azure uses in its "missing approval" message (`Identification`).
    pub const fn short_name(self) -> &'static str {
        match self {
            Feature::FaceIdentification => "Identification",
            Feature::FaceVerification => "Verification",
            Feature::LimitedAccessHighRisk => "HighRisk",
        }
    }
}

/// A flag name that is not a known feature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown feature flag '{name}'; known flags are Face.Identification, Face.Verification and LimitedAccess.HighRisk")]
pub struct UnknownFeature {
    /// The offending name, truncated to 64 characters.
    pub name: String,
}

impl FromStr for Feature {
    type Err = UnknownFeature;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Feature::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFeature {
                name: s.chars().take(64).collect(),
            })
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Feature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Feature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ordered set of features.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct FeatureSet(BTreeSet<Feature>);

impl FeatureSet {
    /// The empty set.
    pub fn new() -> Self {
        FeatureSet(BTreeSet::new())
    }

    /// Parses a list of flag names; duplicates collapse, the first unknown name is an error.
    pub fn parse<'a, I: IntoIterator<Item = &'a str>>(names: I) -> Result<Self, UnknownFeature> {
        names
            .into_iter()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(FeatureSet)
    }

    /// Parses a comma-separated list such as `Face.Identification,Face.Verification`; empty
    /// items are ignored.
    pub fn parse_csv(s: &str) -> Result<Self, UnknownFeature> {
        Self::parse(s.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `feature` is in the set.
    pub fn contains(&self, feature: Feature) -> bool {
        self.0.contains(&feature)
    }

    /// Adds a feature.
    pub fn insert(&mut self, feature: Feature) {
        self.0.insert(feature);
    }

    /// The features of `self` that `other` lacks, in canonical order.
    pub fn missing_from(&self, other: &FeatureSet) -> FeatureSet {
        FeatureSet(self.0.difference(&other.0).copied().collect())
    }

    /// Whether every feature of `self` is in `other`.
    pub fn is_subset(&self, other: &FeatureSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The features in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = Feature> + '_ {
        self.0.iter().copied()
    }

    /// The flags joined by `,` (`Face.Identification,Face.Verification`).
    pub fn to_csv(&self) -> String {
        self.join(Feature::as_str)
    }

    /// The short names joined by `,` (`Identification,Verification`), as in Azure's 403.
    pub fn to_short_csv(&self) -> String {
        self.join(Feature::short_name)
    }

    fn join(&self, name: fn(Feature) -> &'static str) -> String {
        self.iter().map(name).collect::<Vec<_>>().join(",")
    }
}

impl FromIterator<Feature> for FeatureSet {
    fn from_iter<T: IntoIterator<Item = Feature>>(iter: T) -> Self {
        FeatureSet(iter.into_iter().collect())
    }
}

impl fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_csv())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip_and_ignore_case() {
        for f in Feature::ALL {
            assert_eq!(f.as_str().parse::<Feature>().unwrap(), f);
            assert_eq!(f.as_str().to_lowercase().parse::<Feature>().unwrap(), f);
        }
        assert_eq!(
            "Face.Identify".parse::<Feature>().unwrap_err().name,
            "Face.Identify"
        );
        assert!("".parse::<Feature>().is_err());
        assert!(" Face.Identification".parse::<Feature>().is_err());
    }

    #[test]
    fn sets_are_ordered_and_deduplicated() {
        let s = FeatureSet::parse([
            "Face.Verification",
            "Face.Identification",
            "face.verification",
        ])
        .unwrap();
        assert_eq!(s.to_csv(), "Face.Identification,Face.Verification");
        assert_eq!(s.to_short_csv(), "Identification,Verification");
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"["Face.Identification","Face.Verification"]"#
        );
    }

    #[test]
    fn missing_lists_only_what_is_absent() {
        let want = FeatureSet::parse_csv("Face.Identification,Face.Verification").unwrap();
        let have = FeatureSet::parse_csv("Face.Verification").unwrap();
        assert_eq!(want.missing_from(&have).to_csv(), "Face.Identification");
        assert!(!want.is_subset(&have));
        assert!(have.is_subset(&want));
    }

    #[test]
    fn unknown_names_are_truncated_in_errors() {
        let long = "x".repeat(500);
        assert_eq!(long.parse::<Feature>().unwrap_err().name.len(), 64);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_known(s in "\\PC{0,40}") {
            match s.parse::<Feature>() {
                Ok(f) => prop_assert!(f.as_str().eq_ignore_ascii_case(&s)),
                Err(e) => prop_assert!(e.name.chars().count() <= 64),
            }
        }

        #[test]
        fn missing_and_subset_agree(a in proptest::collection::vec(0usize..3, 0..4), b in proptest::collection::vec(0usize..3, 0..4)) {
            let a: FeatureSet = a.into_iter().map(|i| Feature::ALL[i]).collect();
            let b: FeatureSet = b.into_iter().map(|i| Feature::ALL[i]).collect();
            prop_assert_eq!(a.is_subset(&b), a.missing_from(&b).is_empty());
        }
    }
}
