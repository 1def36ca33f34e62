//! Just enough of an X.509 certificate to describe it to an operator: its validity period, its
//! issuer and subject (to tell a self-signed certificate), and its subject alternative names.
//!
//! rustls and webpki do the real work of a handshake; this reader only feeds the checks made
//! before a certificate is put in service and the messages that explain them. It insists on
//! DER's definite, minimal lengths and on nothing after the certificate, checks the structure
//! of the fields it reads, and skips the rest (rustls and webpki judge those), so a file that
//! only looks like a certificate is reported instead of guessed at.

use std::net::IpAddr;

use latch_core::UnixTime;

/// What was wrong with the DER.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a well-formed X.509 certificate: {0}")]
pub struct X509Error(&'static str);

/// The parts of a certificate the checks and messages use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Not valid before this second (inclusive).
    pub not_before: UnixTime,
    /// Not valid after this second (inclusive, RFC 5280 §4.1.2.5).
    pub not_after: UnixTime,
    /// The issuer's distinguished name, as encoded.
    pub issuer: Vec<u8>,
    /// The subject's distinguished name, as encoded.
    pub subject: Vec<u8>,
    /// DNS names and IP addresses of the subject alternative name extension, in order.
    pub names: Vec<String>,
}

impl CertificateInfo {
    /// Reads a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertificateInfo, X509Error> {
        let mut outer = Reader::new(der);
        let certificate = outer.expect(SEQUENCE, "the certificate is not a SEQUENCE")?;
        outer.end("bytes after the certificate")?;
        let mut certificate = Reader::new(certificate);
        let tbs = certificate.expect(SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
        certificate.expect(SEQUENCE, "signatureAlgorithm is not a SEQUENCE")?;
        certificate.expect(BIT_STRING, "signatureValue is not a BIT STRING")?;
        certificate.end("more than three parts in the certificate")?;

        let mut tbs = Reader::new(tbs);
        if tbs.peek() == Some(VERSION) {
            tbs.expect(VERSION, "bad version")?;
        }
        tbs.expect(INTEGER, "serialNumber is not an INTEGER")?;
        tbs.expect(SEQUENCE, "signature is not a SEQUENCE")?;
        let issuer = tbs.expect(SEQUENCE, "issuer is not a SEQUENCE")?.to_vec();
        let mut validity = Reader::new(tbs.expect(SEQUENCE, "validity is not a SEQUENCE")?);
        let not_before = validity.time()?;
        let not_after = validity.time()?;
        validity.end("more than two times in validity")?;
        let subject = tbs.expect(SEQUENCE, "subject is not a SEQUENCE")?.to_vec();
        tbs.expect(SEQUENCE, "subjectPublicKeyInfo is not a SEQUENCE")?;
        let mut names = Vec::new();
        while let Some((tag, value)) = tbs.next()? {
            if tag == EXTENSIONS {
                let mut wrapper = Reader::new(value);
                let list = wrapper.expect(SEQUENCE, "extensions are not a SEQUENCE")?;
                wrapper.end("bytes after the extensions")?;
                names = subject_alt_names(list)?;
            }
        }
        if not_after.0 < not_before.0 {
            return Err(X509Error("notAfter is before notBefore"));
        }
        Ok(CertificateInfo {
            not_before,
            not_after,
            issuer,
            subject,
            names,
        })
    }

    /// Issued by its own subject: a development certificate, or a root.
    pub fn is_self_issued(&self) -> bool {
        self.issuer == self.subject
    }
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const SAN_DNS: u8 = 0x82;
const SAN_IP: u8 = 0x87;
/// id-ce-subjectAltName, 2.5.29.17.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

fn subject_alt_names(list: &[u8]) -> Result<Vec<String>, X509Error> {
    let mut names = Vec::new();
    let mut extensions = Reader::new(list);
    while let Some((tag, extension)) = extensions.next()? {
        if tag != SEQUENCE {
            return Err(X509Error("an extension is not a SEQUENCE"));
        }
        let mut extension = Reader::new(extension);
        let oid = extension.expect(OID, "an extension has no OID")?;
        if extension.peek() == Some(BOOLEAN) {
            extension.expect(BOOLEAN, "bad criticality")?;
        }
        let value = extension.expect(OCTET_STRING, "an extension value is not an OCTET STRING")?;
        extension.end("bytes after an extension value")?;
        if oid != SAN_OID {
            continue;
        }
        let mut wrapper = Reader::new(value);
        let mut general_names =
            Reader::new(wrapper.expect(SEQUENCE, "subjectAltName is not a SEQUENCE")?);
        wrapper.end("bytes after subjectAltName")?;
        while let Some((tag, name)) = general_names.next()? {
            match tag {
                // Host-name characters only: these names reach messages, logs and the audit log.
                SAN_DNS => names.push(
                    std::str::from_utf8(name)
                        .ok()
                        .filter(|s| {
                            s.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*')
                            })
                        })
                        .ok_or(X509Error("a DNS name has characters no host name has"))?
                        .to_owned(),
                ),
                SAN_IP => names.push(match name.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(name).unwrap_or_default()).to_string(),
                    16 => IpAddr::from(<[u8; 16]>::try_from(name).unwrap_or_default()).to_string(),
                    _ => return Err(X509Error("an IP address is neither 4 nor 16 bytes")),
                }),
                // Other name forms (e-mail, URI, ...) do not name a TLS server.
                _ => {}
            }
        }
    }
    Ok(names)
}

/// A cursor over DER TLVs.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn end(&self, what: &'static str) -> Result<(), X509Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(X509Error(what))
        }
    }

    /// The next tag and value, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u8, &'a [u8])>, X509Error> {
        let Some((&tag, rest)) = self.rest.split_first() else {
            return Ok(None);
        };
        if tag & 0x1f == 0x1f {
            return Err(X509Error("high tag numbers are not used in certificates"));
        }
        let (&first, rest) = rest.split_first().ok_or(X509Error("a length is missing"))?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x80 => return Err(X509Error("indefinite lengths are not DER")),
            0x81..=0x84 => {
                let n = usize::from(first & 0x7f);
                if rest.len() < n {
                    return Err(X509Error("a length is cut short"));
                }
                let (digits, rest) = rest.split_at(n);
                if digits[0] == 0 {
                    return Err(X509Error("a length has a leading zero"));
                }
                let len = digits
                    .iter()
                    .fold(0usize, |acc, &d| (acc << 8) | usize::from(d));
                if len < 0x80 {
                    return Err(X509Error("a short length in the long form"));
                }
                (len, rest)
            }
            _ => return Err(X509Error("a length is too large")),
        };
        if rest.len() < len {
            return Err(X509Error("a value is cut short"));
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(Some((tag, value)))
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], X509Error> {
        match self.next()? {
            Some((t, value)) if t == tag => Ok(value),
            _ => Err(X509Error(what)),
        }
    }

    /// A UTCTime or GeneralizedTime, in the forms RFC 5280 §4.1.2.5 allows (seconds, `Z`).
    fn time(&mut self) -> Result<UnixTime, X509Error> {
        let (tag, value) = self.next()?.ok_or(X509Error("a time is missing"))?;
        let (year, rest) = match (tag, value.len()) {
            (UTC_TIME, 13) => {
                let yy = digits(&value[..2])?;
                // RFC 5280: YY >= 50 is 19YY, otherwise 20YY.
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &value[2..])
            }
            (GENERALIZED_TIME, 15) => (digits(&value[..4])?, &value[4..]),
            _ => return Err(X509Error("a validity time is not in RFC 5280 form")),
        };
        if rest[10] != b'Z' {
            return Err(X509Error("a validity time is not in UTC (Z)"));
        }
        let field = |i: usize| digits(&rest[i..i + 2]);
        let month = time::Month::try_from(u8::try_from(field(0)?).unwrap_or(0))
            .map_err(|_| X509Error("a month is out of range"))?;
        let date = time::Date::from_calendar_date(
            i32::try_from(year).unwrap_or(0),
            month,
            u8::try_from(field(2)?).unwrap_or(0),
        )
        .map_err(|_| X509Error("a date is out of range"))?;
        let clock = time::Time::from_hms(
            u8::try_from(field(4)?).unwrap_or(99),
            u8::try_from(field(6)?).unwrap_or(99),
            u8::try_from(field(8)?).unwrap_or(99),
        )
        .map_err(|_| X509Error("a time of day is out of range"))?;
        Ok(UnixTime(
            time::PrimitiveDateTime::new(date, clock)
                .assume_utc()
                .unix_timestamp(),
        ))
    }
}

fn digits(bytes: &[u8]) -> Result<u32, X509Error> {
    bytes.iter().try_fold(0u32, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u32::from(b - b'0'))
        } else {
            Err(X509Error("a time has a non-digit"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn certificate(names: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_validity_and_names() {
        let der = certificate(
            &["sts.example.com", "127.0.0.1", "::1"],
            (2026, 1, 1),
            (2051, 6, 30),
        );
        let info = CertificateInfo::parse(&der).unwrap();
        assert_eq!(info.not_before, UnixTime(1_767_225_600));
        // 2051 needs GeneralizedTime: both forms are read.
        assert_eq!(info.not_after, UnixTime(2_571_696_000));
        assert_eq!(info.names, ["sts.example.com", "127.0.0.1", "::1"]);
        assert!(info.is_self_issued());
    }

    #[test]
    fn a_utc_time_before_1950_is_read_as_the_next_century() {
        let der = certificate(&["a.example"], (1999, 12, 31), (2049, 12, 31));
        let info = CertificateInfo::parse(&der).unwrap();
        assert_eq!(info.not_before, UnixTime(946_598_400));
        assert_eq!(info.not_after, UnixTime(2_524_521_600));
    }

    #[test]
    fn refuses_what_is_not_a_certificate() {
        let der = certificate(&["a.example"], (2026, 1, 1), (2027, 1, 1));
        for (bytes, why) in [
            (vec![], "the certificate is not a SEQUENCE"),
            (
                b"-----BEGIN CERTIFICATE-----".to_vec(),
                "a value is cut short",
            ),
            (
                [der.clone(), vec![0]].concat(),
                "bytes after the certificate",
            ),
            (der[..der.len() - 1].to_vec(), "a value is cut short"),
            (vec![0x30, 0x80, 0, 0], "indefinite lengths are not DER"),
            (
                vec![0x30, 0x81, 0x05, 0, 0, 0, 0, 0],
                "a short length in the long form",
            ),
            (vec![0x30, 0x82, 0x00, 0x85], "a length has a leading zero"),
            (vec![0x30, 0x85, 1, 1, 1, 1, 1], "a length is too large"),
            (
                vec![0x1f, 0x01, 0x00],
                "high tag numbers are not used in certificates",
            ),
            (vec![0x30], "a length is missing"),
            (vec![0x30, 0x00], "tbsCertificate is not a SEQUENCE"),
            (vec![0x02, 0x00], "the certificate is not a SEQUENCE"),
        ] {
            assert_eq!(CertificateInfo::parse(&bytes), Err(X509Error(why)), "{why}");
        }
    }

    #[test]
    fn a_name_with_control_characters_is_refused() {
        let der = certificate(&["evil.example"], (2026, 1, 1), (2027, 1, 1));
        let at = der.windows(12).position(|w| w == b"evil.example").unwrap();
        let mut bad = der.clone();
        bad[at + 4] = b'\n';
        assert_eq!(
            CertificateInfo::parse(&bad),
            Err(X509Error("a DNS name has characters no host name has"))
        );
    }

    #[test]
    fn refuses_malformed_times() {
        let der = certificate(&["a.example"], (2026, 1, 1), (2027, 1, 1));
        let at = der.windows(13).position(|w| w == b"260101000000Z").unwrap();
        for (replacement, why) in [
            (&b"261301000000Z"[..], "a month is out of range"),
            (b"260132000000Z", "a date is out of range"),
            (b"260101250000Z", "a time of day is out of range"),
            (b"26010100000+Z", "a time has a non-digit"),
            (b"2601010000000", "a validity time is not in UTC (Z)"),
        ] {
            let mut bad = der.clone();
            bad[at..at + 13].copy_from_slice(replacement);
            assert_eq!(CertificateInfo::parse(&bad), Err(X509Error(why)), "{why}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No input makes the reader panic; every change to a certificate either still reads
        /// or is refused.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = CertificateInfo::parse(&bytes);
        }

        /// Near-valid input reaches the deeper fields: still no panic, and whatever reads
        /// has only host-name characters in its names.
        #[test]
        fn a_mutated_certificate_is_read_or_refused(at in 0usize..400, byte in any::<u8>()) {
            let der = certificate(&["a.example"], (2026, 1, 1), (2027, 1, 1));
            let mut bad = der.clone();
            let at = at % bad.len();
            bad[at] = byte;
            if let Ok(info) = CertificateInfo::parse(&bad) {
                prop_assert!(info.names.iter().all(|n| !n.contains(|c: char| c.is_control() || c == ' ')));
            }
        }
    }
}
