//! Azure resource ids of Cognitive Services accounts.
//!
//! ```text
//! /subscriptions/{uuid}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}
//! ```
//!
//! A [`ResourceId`] keeps the caller's spelling, which is what it displays and what goes into
//! token claims, and derives one canonical form (all lowercase) that is used for equality,
//! hashing, ordering and store lookups. The keywords (`subscriptions`, `resourceGroups`,
//! `providers`, the namespace, `accounts`) and the names compare case-insensitively, as Azure
//! Resource Manager does (see [`fold_case`] for non-ASCII group names).
//!
//! The rules, from the ARM naming rules for these resource types:
//!
//! * subscription id: a UUID in its 8-4-4-4-12 hexadecimal form, no braces;
//! * resource group: 1 to 90 characters, each a Unicode letter or digit or one of `-_.()`,
//!   not ending with `.`;
//! * account name: 2 to 64 characters, ASCII letters, digits and `-`, starting and ending with a
//!   letter or digit. ARM's generic rule also admits `_` and `.` inside; we refuse them because
//!   a Cognitive Services account name becomes its DNS subdomain, where neither is valid;
//! * nothing else: no query, no fragment, no trailing `/`, no extra segments, at most
//!   [`MAX_LEN`] bytes in all.
//!
//! Parse errors name the part that is wrong, so an API can answer with Azure's generic message
//! followed by the detail.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::str::FromStr;

/// The longest resource id accepted, in bytes. The longest valid id is about 270 bytes of
/// ASCII (more with multi-byte group names); the bound keeps hostile input cheap.
pub const MAX_LEN: usize = 1024;

const NAMESPACE: &str = "Microsoft.CognitiveServices";

/// A parsed, valid resource id of a Cognitive Services account.
#[derive(Clone)]
pub struct ResourceId {
    raw: Box<str>,
    canonical: Box<str>,
    subscription: Range<usize>,
    group: Range<usize>,
    account: Range<usize>,
}

/// The part of a resource id that a [`ResourceIdError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The `subscriptions` keyword.
    SubscriptionsKeyword,
    /// The subscription id.
    SubscriptionId,
    /// The `resourceGroups` keyword.
    ResourceGroupsKeyword,
    /// The resource group name.
    ResourceGroup,
    /// The `providers` keyword.
    ProvidersKeyword,
    /// The provider namespace.
    Namespace,
    /// The `accounts` keyword.
    AccountsKeyword,
    /// The account name.
    AccountName,
}

impl Part {
    const ORDER: [Part; 8] = [
        Part::SubscriptionsKeyword,
        Part::SubscriptionId,
        Part::ResourceGroupsKeyword,
        Part::ResourceGroup,
        Part::ProvidersKeyword,
        Part::Namespace,
        Part::AccountsKeyword,
        Part::AccountName,
    ];

    fn describe(self) -> &'static str {
        match self {
            Part::SubscriptionsKeyword => "the 'subscriptions' segment",
            Part::SubscriptionId => "the subscription id",
            Part::ResourceGroupsKeyword => "the 'resourceGroups' segment",
            Part::ResourceGroup => "the resource group name",
            Part::ProvidersKeyword => "the 'providers' segment",
            Part::Namespace => "the provider namespace",
            Part::AccountsKeyword => "the 'accounts' segment",
            Part::AccountName => "the account name",
        }
    }
}

/// Why a string is not a valid resource id. Each variant names the part that is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceIdError {
    /// The input is empty.
    #[error("the resource id is empty")]
    Empty,
    /// The input exceeds [`MAX_LEN`] bytes.
    #[error("the resource id is longer than {MAX_LEN} bytes")]
    TooLong,
    /// The input does not start with `/`.
    #[error("the resource id must start with '/subscriptions/'")]
    NotAbsolute,
    /// The input has a `?` or `#`.
    #[error("the resource id must not contain a query or a fragment ('?' or '#')")]
    QueryOrFragment,
    /// The input ends with `/`.
    #[error("the resource id must not end with '/'")]
    TrailingSlash,
    /// A part is absent.
    #[error("{} is missing", .0.describe())]
    Missing(Part),
    /// A part is present but empty (`//`).
    #[error("{} is empty", .0.describe())]
    EmptyPart(Part),
    /// A keyword segment has another word.
    #[error("{} has an unexpected value", .0.describe())]
    WrongKeyword(Part),
    /// The subscription id is not a UUID.
    #[error("the subscription id is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
    SubscriptionIdNotUuid,
    /// The namespace is not `Microsoft.CognitiveServices`.
    #[error("the provider namespace must be 'Microsoft.CognitiveServices'")]
    WrongNamespace,
    /// The resource group name is longer than 90 characters.
    #[error("the resource group name is longer than 90 characters")]
    ResourceGroupTooLong,
    /// The resource group name has a character outside its alphabet.
    #[error("the resource group name may hold only letters, digits and '-', '_', '.', '(', ')'")]
    ResourceGroupCharacter,
    /// The resource group name ends with a period.
    #[error("the resource group name must not end with '.'")]
    ResourceGroupTrailingPeriod,
    /// The account name is shorter than 2 or longer than 64 characters.
    #[error("the account name must be 2 to 64 characters long")]
    AccountNameLength,
    /// The account name has a character outside its alphabet.
    #[error("the account name may hold only ASCII letters, digits and '-'")]
    AccountNameCharacter,
    /// The account name starts or ends with a hyphen.
    #[error("the account name must start and end with a letter or a digit")]
    AccountNameEdge,
    /// There are segments after the account name.
    #[error("the resource id has segments after the account name")]
    ExtraSegments,
}

impl ResourceId {
    /// Parses `input` into a resource id, or says which part is wrong.
    pub fn parse(input: &str) -> Result<Self, ResourceIdError> {
        if input.is_empty() {
            return Err(ResourceIdError::Empty);
        }
        if input.len() > MAX_LEN {
            return Err(ResourceIdError::TooLong);
        }
        if input.contains(['?', '#']) {
            return Err(ResourceIdError::QueryOrFragment);
        }
        let Some(rest) = input.strip_prefix('/') else {
            return Err(ResourceIdError::NotAbsolute);
        };
        if input.len() > 1 && input.ends_with('/') {
            return Err(ResourceIdError::TrailingSlash);
        }

        // Byte ranges of the eight segments within `input`; each is checked as it is reached,
        // so the error names the first wrong part.
        let mut ranges: [Range<usize>; 8] = Default::default();
        let mut segments = rest.split('/');
        let mut offset = 1;
        for (i, (part, range)) in Part::ORDER.iter().zip(ranges.iter_mut()).enumerate() {
            let segment = segments.next().ok_or(ResourceIdError::Missing(*part))?;
            if segment.is_empty() {
                return Err(ResourceIdError::EmptyPart(*part));
            }
            check_segment(i, segment)?;
            *range = offset..offset + segment.len();
            offset += segment.len() + 1;
        }
        if segments.next().is_some() {
            return Err(ResourceIdError::ExtraSegments);
        }
        let seg = |i: usize| &input[ranges[i].clone()];

        let canonical = format!(
            "/subscriptions/{}/resourcegroups/{}/providers/microsoft.cognitiveservices/accounts/{}",
            seg(1).to_ascii_lowercase(),
            fold_case(seg(3)),
            seg(7).to_ascii_lowercase(),
        );
        Ok(ResourceId {
            raw: input.into(),
            canonical: canonical.into_boxed_str(),
            subscription: ranges[1].clone(),
            group: ranges[3].clone(),
            account: ranges[7].clone(),
        })
    }

    /// The id as the caller spelled it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The canonical form: every part lowercase. Two ids are equal when their canonical forms are.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The subscription id, as spelled by the caller.
    pub fn subscription_id(&self) -> &str {
        &self.raw[self.subscription.clone()]
    }

    /// The resource group name, as spelled by the caller.
    pub fn resource_group(&self) -> &str {
        &self.raw[self.group.clone()]
    }

    /// The account name, as spelled by the caller.
    pub fn account_name(&self) -> &str {
        &self.raw[self.account.clone()]
    }
}

/// The case-folded form of a resource group name: each character mapped on its own to its
/// lowercase form when that is a single character, and kept otherwise.
///
/// Mapping character by character, like .NET's ordinal ignore-case comparison that Azure uses,
/// avoids context rules (a final `Σ` is `σ` here, as anywhere) and one-to-many mappings (`İ`
/// would become `i` + U+0307, a combining mark the name alphabet does not admit), so the
/// canonical form is always itself a valid name. Names are not Unicode-normalized; a
/// decomposed `e` + U+0301 is refused outright, as combining marks are not letters.
fn fold_case(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        })
        .collect()
}

/// Checks segment `i` (0 to 7) of a resource id.
fn check_segment(i: usize, s: &str) -> Result<(), ResourceIdError> {
    let keyword = |word: &str| {
        if s.eq_ignore_ascii_case(word) {
            Ok(())
        } else {
            Err(ResourceIdError::WrongKeyword(Part::ORDER[i]))
        }
    };
    match i {
        0 => keyword("subscriptions"),
        1 => check_uuid(s),
        2 => keyword("resourceGroups"),
        3 => check_resource_group(s),
        4 => keyword("providers"),
        5 if s.eq_ignore_ascii_case(NAMESPACE) => Ok(()),
        5 => Err(ResourceIdError::WrongNamespace),
        6 => keyword("accounts"),
        _ => check_account_name(s),
    }
}

fn check_uuid(s: &str) -> Result<(), ResourceIdError> {
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if ok {
        Ok(())
    } else {
        Err(ResourceIdError::SubscriptionIdNotUuid)
    }
}

fn check_resource_group(s: &str) -> Result<(), ResourceIdError> {
    let mut count = 0usize;
    for c in s.chars() {
        count += 1;
        if !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')')) {
            return Err(ResourceIdError::ResourceGroupCharacter);
        }
    }
    if count > 90 {
        return Err(ResourceIdError::ResourceGroupTooLong);
    }
    if s.ends_with('.') {
        return Err(ResourceIdError::ResourceGroupTrailingPeriod);
    }
    Ok(())
}

fn check_account_name(s: &str) -> Result<(), ResourceIdError> {
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ResourceIdError::AccountNameCharacter);
    }
    if !(2..=64).contains(&s.len()) {
        return Err(ResourceIdError::AccountNameLength);
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(ResourceIdError::AccountNameEdge);
    }
    Ok(())
}

// === impl ResourceId ===

impl FromStr for ResourceId {
    type Err = ResourceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceId::parse(s)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResourceId").field(&&*self.raw).finish()
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ResourceId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.canonical.cmp(&other.canonical)
    }
}

impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ResourceId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
