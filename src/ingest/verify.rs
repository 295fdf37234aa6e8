//! Is a request from the help desk it claims to be from? One scheme per kind of source:
//!
//! - Zendesk: `X-Zendesk-Webhook-Signature` is base64(HMAC-SHA256(secret, timestamp + body))
//!   where timestamp is the `X-Zendesk-Webhook-Signature-Timestamp` header as sent
//!   (RFC 3339, e.g. `2021-03-25T05:09:27Z`, or Unix seconds or milliseconds as some
//!   integrations send it); timestamps outside the tolerance are refused.
//! - Jira (WebSub): `X-Hub-Signature: sha256=` + hex(HMAC-SHA256(secret, body)).
//! - Generic: a configured header holding `sha256=<hex>` (or bare hex) of
//!   HMAC-SHA256(secret, `<timestamp>.<body>`), the timestamp being Unix seconds in a second
//!   configured header; or of the body alone when no timestamp header is configured.
//! - ServiceNow, Freshdesk: a shared token in a configured header, or HTTP basic auth.
//!
//! Headers are checked first ([`Verifier::headers`]), before the body is read: a request
//! without credentials, with a wrong token or password, or with a stale timestamp is refused
//! without reading its body. Signatures are then checked over the raw body
//! ([`Pending::body`]). Every comparison of a secret or a signature is in constant time.
//! Nothing here logs, and no refusal message repeats what the client sent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac as _};
use hyper::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::IngestAuth;
use super::replay::Mac;
use crate::config::{ConfigError, SecretRef};

type HmacSha256 = Hmac<Sha256>;

/// Zendesk's signature header.
pub const ZENDESK_SIGNATURE: &str = "x-zendesk-webhook-signature";
/// Zendesk's signature timestamp header.
pub const ZENDESK_TIMESTAMP: &str = "x-zendesk-webhook-signature-timestamp";
/// Jira's (WebSub) signature header.
pub const HUB_SIGNATURE: &str = "x-hub-signature";

/// Why a request is not accepted as authentic. Never retryable: the same request will be
/// refused again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A header the scheme needs is absent (or not text).
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A configured header is absent.
    #[error("missing {0} header")]
    MissingConfigured(String),
    /// The signature is not in the scheme's format.
    #[error("malformed signature in {0}")]
    Malformed(String),
    /// The signature does not match the body.
    #[error("signature does not match")]
    BadSignature,
    /// Wrong token, user name or password.
    #[error("wrong credentials")]
    BadCredentials,
    /// The signed timestamp cannot be read.
    #[error("unreadable signature timestamp in {0}")]
    BadTimestamp(String),
    /// The signed timestamp is too far from the clock.
    #[error(
        "signature timestamp is {skew_s} s from the server's clock (tolerance {tolerance_s} s)"
    )]
    Stale {
        /// How far, in seconds (positive: in the past).
        skew_s: i64,
        /// The tolerance.
        tolerance_s: u64,
    },
}

impl Refusal {
    /// Whether the refusal is about time (`stale`) rather than credentials (`unauthorized`).
    pub fn is_stale(&self) -> bool {
        matches!(self, Refusal::Stale { .. } | Refusal::BadTimestamp(_))
    }

    /// Never: the same request would be refused again.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Checks the requests of one route.
pub struct Verifier {
    scheme: Scheme,
    tolerance: Duration,
}

enum Scheme {
    Zendesk(HmacSha256),
    Hub(HmacSha256),
    Generic {
        key: HmacSha256,
        signature_header: String,
        timestamp_header: Option<String>,
    },
    Token {
        header: String,
        digest: [u8; 32],
    },
    Basic {
        user: [u8; 32],
        password: [u8; 32],
    },
}

/// The body check still to do after the headers passed.
pub enum Pending {
    /// Nothing: the credentials were in the headers. No replay protection applies.
    Accepted,
    /// Compare `expected` with HMAC(key, prefix + body).
    Signature {
        /// The keyed HMAC state (boxed: it is large next to the other variant).
        key: Box<HmacSha256>,
        /// What is signed before the body (the timestamp, and a separator).
        prefix: Vec<u8>,
        /// The signature the request carries.
        expected: Mac,
    },
}

fn keyed(secret: &SecretRef) -> Result<HmacSha256, ConfigError> {
    let s = secret.read()?;
    Ok(HmacSha256::new_from_slice(s.expose().as_bytes()).expect("HMAC takes keys of any size"))
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

impl Verifier {
    /// A verifier for `auth` (its secret is read now); signed timestamps may be `tolerance`
    /// away from the clock.
    pub fn new(auth: &IngestAuth, tolerance: Duration) -> Result<Verifier, ConfigError> {
        let scheme = match auth {
            IngestAuth::ZendeskSignature { secret } => Scheme::Zendesk(keyed(secret)?),
            IngestAuth::HubSignature { secret } => Scheme::Hub(keyed(secret)?),
            IngestAuth::Hmac {
                secret,
                signature_header,
                timestamp_header,
            } => Scheme::Generic {
                key: keyed(secret)?,
                signature_header: signature_header.clone(),
                timestamp_header: timestamp_header.clone(),
            },
            IngestAuth::Token { header, token } => Scheme::Token {
                header: header.clone(),
                digest: sha256(token.read()?.expose().as_bytes()),
            },
            IngestAuth::Basic { username, password } => Scheme::Basic {
                user: sha256(username.as_bytes()),
                password: sha256(password.read()?.expose().as_bytes()),
            },
        };
        Ok(Verifier { scheme, tolerance })
    }

    /// The `WWW-Authenticate` challenge of a 401, for schemes HTTP has one for (basic).
    pub fn challenge(&self) -> Option<&'static str> {
        match self.scheme {
            Scheme::Basic { .. } => Some("Basic realm=\"triage ingest\", charset=\"UTF-8\""),
            _ => None,
        }
    }

    /// Check what the headers alone can show, at time `now`.
    pub fn headers(&self, h: &HeaderMap, now: SystemTime) -> Result<Pending, Refusal> {
        match &self.scheme {
            Scheme::Zendesk(key) => {
                let sig =
                    header(h, ZENDESK_SIGNATURE).ok_or(Refusal::Missing(ZENDESK_SIGNATURE))?;
                let ts = header(h, ZENDESK_TIMESTAMP).ok_or(Refusal::Missing(ZENDESK_TIMESTAMP))?;
                let at = parse_signature_time(ts)
                    .ok_or_else(|| Refusal::BadTimestamp(ZENDESK_TIMESTAMP.into()))?;
                self.fresh(at, now)?;
                let expected = base64::engine::general_purpose::STANDARD
                    .decode(sig)
                    .ok()
                    .and_then(|b| Mac::try_from(b.as_slice()).ok())
                    .ok_or_else(|| Refusal::Malformed(ZENDESK_SIGNATURE.into()))?;
                Ok(Pending::Signature {
                    key: Box::new(key.clone()),
                    prefix: ts.as_bytes().to_vec(),
                    expected,
                })
            }
            Scheme::Hub(key) => {
                let sig = header(h, HUB_SIGNATURE).ok_or(Refusal::Missing(HUB_SIGNATURE))?;
                let expected = sig
                    .strip_prefix("sha256=")
                    .and_then(parse_hex)
                    .ok_or_else(|| Refusal::Malformed(HUB_SIGNATURE.into()))?;
                Ok(Pending::Signature {
                    key: Box::new(key.clone()),
                    prefix: Vec::new(),
                    expected,
                })
            }
            Scheme::Generic {
                key,
                signature_header,
                timestamp_header,
            } => {
                let sig = header(h, signature_header)
                    .ok_or_else(|| Refusal::MissingConfigured(signature_header.clone()))?;
                let prefix = match timestamp_header {
                    None => Vec::new(),
                    Some(th) => {
                        let ts =
                            header(h, th).ok_or_else(|| Refusal::MissingConfigured(th.clone()))?;
                        let secs: i64 =
                            ts.parse().map_err(|_| Refusal::BadTimestamp(th.clone()))?;
                        self.fresh(secs, now)?;
                        format!("{ts}.").into_bytes()
                    }
                };
                let hex = sig.strip_prefix("sha256=").unwrap_or(sig);
                let expected =
                    parse_hex(hex).ok_or_else(|| Refusal::Malformed(signature_header.clone()))?;
                Ok(Pending::Signature {
                    key: Box::new(key.clone()),
                    prefix,
                    expected,
                })
            }
            Scheme::Token {
                header: name,
                digest,
            } => {
                let given = h
                    .get(name.as_str())
                    .ok_or_else(|| Refusal::MissingConfigured(name.clone()))?;
                if bool::from(sha256(given.as_bytes()).ct_eq(digest)) {
                    Ok(Pending::Accepted)
                } else {
                    Err(Refusal::BadCredentials)
                }
            }
            Scheme::Basic { user, password } => {
                let value = header(h, "authorization").ok_or(Refusal::Missing("authorization"))?;
                let (scheme, b64) = value.split_once(' ').ok_or(Refusal::BadCredentials)?;
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(Refusal::BadCredentials);
                }
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| Refusal::BadCredentials)?;
                let colon = decoded
                    .iter()
                    .position(|&b| b == b':')
                    .ok_or(Refusal::BadCredentials)?;
                let (u, p) = (&decoded[..colon], &decoded[colon + 1..]);
                // Both compared, always: no early exit that would tell which one was wrong.
                let ok = sha256(u).ct_eq(user) & sha256(p).ct_eq(password);
                if bool::from(ok) {
                    Ok(Pending::Accepted)
                } else {
                    Err(Refusal::BadCredentials)
                }
            }
        }
    }

    /// Refuse a signed time (Unix seconds) further than the tolerance from `now`.
    fn fresh(&self, at: i64, now: SystemTime) -> Result<(), Refusal> {
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(_) => 0,
        };
        let skew = now.saturating_sub(at);
        if skew.unsigned_abs() > self.tolerance.as_secs() {
            return Err(Refusal::Stale {
                skew_s: skew,
                tolerance_s: self.tolerance.as_secs(),
            });
        }
        Ok(())
    }
}

impl Pending {
    /// Check the signature over the raw body. `Ok(Some(mac))`: authentic, and `mac` is what
    /// replay protection remembers; `Ok(None)`: authentic, no replay protection applies.
    pub fn body(self, body: &[u8]) -> Result<Option<Mac>, Refusal> {
        match self {
            Pending::Accepted => Ok(None),
            Pending::Signature {
                mut key,
                prefix,
                expected,
            } => {
                key.update(&prefix);
                key.update(body);
                // verify_slice compares in constant time.
                key.verify_slice(&expected)
                    .map(|()| Some(expected))
                    .map_err(|_| Refusal::BadSignature)
            }
        }
    }
}

fn parse_hex(s: &str) -> Option<Mac> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nibble(b[2 * i])? << 4 | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

/// Lower-case hex of bytes (for signing in tests and tools).
pub fn to_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// HMAC-SHA256 of `parts`, concatenated, with `secret` (for signing in tests and tools).
pub fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Seconds since the Unix epoch of a signature timestamp as integrations send it: an RFC 3339
/// date-time, or Unix time in seconds (up to 11 digits) or milliseconds (13 digits); `None` if
/// it is none of these.
pub fn parse_signature_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return match s.len() {
            1..=11 => Some(n),
            13 => Some(n / 1000),
            _ => None,
        };
    }
    parse_rfc3339(s)
}

/// Seconds since the Unix epoch of an RFC 3339 date-time (`2021-03-25T05:09:27Z`,
/// `2021-03-25T07:09:27.123+02:00`); `None` if it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), after H. Hinnant's algorithm.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn secret(s: &str) -> SecretRef {
        SecretRef::value(Secret::new(s))
    }
    use hyper::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn at(rfc3339: &str) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(parse_rfc3339(rfc3339).unwrap() as u64)
    }

    const TOLERANCE: Duration = Duration::from_secs(300);

    // The expected signatures below were computed with Python's standard library
    // (hmac.new(secret, msg, hashlib.sha256)), independently of this code.

    #[test]
    fn zendesk_signature_over_timestamp_and_body() {
        let v = Verifier::new(
            &IngestAuth::ZendeskSignature {
                secret: secret("dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="),
            },
            TOLERANCE,
        )
        .unwrap();
        let body = br#"{"type":"zen:event-type:ticket.created","detail":{"id":"35436"}}"#;
        let good = headers(&[
            (
                ZENDESK_SIGNATURE,
                "mhGHyndTFLGR3UMLseERutJPp3XdywYNr0gnLiJ9vEM=",
            ),
            (ZENDESK_TIMESTAMP, "2021-03-25T05:09:27Z"),
        ]);
        let now = at("2021-03-25T05:10:00Z");
        let mac = v.headers(&good, now).unwrap().body(body).unwrap();
        assert!(mac.is_some(), "signed requests are replay-protected");
        // One byte changed in the body, or another timestamp: refused.
        assert_eq!(
            v.headers(&good, now)
                .unwrap()
                .body(&body[..body.len() - 1])
                .unwrap_err(),
            Refusal::BadSignature
        );
        let other_ts = headers(&[
            (
                ZENDESK_SIGNATURE,
                "mhGHyndTFLGR3UMLseERutJPp3XdywYNr0gnLiJ9vEM=",
            ),
            (ZENDESK_TIMESTAMP, "2021-03-25T05:09:28Z"),
        ]);
        assert_eq!(
            v.headers(&other_ts, now).unwrap().body(body).unwrap_err(),
            Refusal::BadSignature
        );
        // Stale, and from the future, beyond the tolerance.
        let e = v.headers(&good, at("2021-03-25T05:14:28Z")).err().unwrap();
        assert!(e.is_stale(), "{e}");
        assert!(v.headers(&good, at("2021-03-25T05:04:26Z")).is_err());
        assert!(v.headers(&good, at("2021-03-25T05:14:27Z")).is_ok());
        // Missing or malformed headers.
        assert_eq!(
            v.headers(
                &headers(&[(ZENDESK_TIMESTAMP, "2021-03-25T05:09:27Z")]),
                now
            )
            .err(),
            Some(Refusal::Missing(ZENDESK_SIGNATURE))
        );
        let bad = headers(&[
            (ZENDESK_SIGNATURE, "not base64!"),
            (ZENDESK_TIMESTAMP, "2021-03-25T05:09:27Z"),
        ]);
        assert!(matches!(v.headers(&bad, now), Err(Refusal::Malformed(_))));
        let bad_ts = headers(&[
            (
                ZENDESK_SIGNATURE,
                "mhGHyndTFLGR3UMLseERutJPp3XdywYNr0gnLiJ9vEM=",
            ),
            (ZENDESK_TIMESTAMP, "yesterday"),
        ]);
        assert!(v.headers(&bad_ts, now).err().unwrap().is_stale());
    }

    #[test]
    fn zendesk_timestamp_as_unix_seconds_or_milliseconds() {
        let v = Verifier::new(
            &IngestAuth::ZendeskSignature {
                secret: secret("dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="),
            },
            TOLERANCE,
        )
        .unwrap();
        let now = at("2021-03-25T05:09:27Z");
        let unix = parse_rfc3339("2021-03-25T05:09:27Z").unwrap();
        assert_eq!(parse_signature_time(&unix.to_string()), Some(unix));
        assert_eq!(
            parse_signature_time(&format!("{}123", unix)),
            Some(unix),
            "milliseconds"
        );
        assert_eq!(parse_signature_time(" 2021-03-25T05:09:27Z"), Some(unix));
        assert_eq!(parse_signature_time("123456789012"), None, "12 digits");
        assert_eq!(parse_signature_time("-5"), None);
        // A Unix-seconds header is read as a time (fresh or stale), signed as sent.
        let sig = |ts: &str| {
            let mac = hmac_sha256(
                b"dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==",
                &[ts.as_bytes(), b"{}"],
            );
            base64::engine::general_purpose::STANDARD.encode(mac)
        };
        let ts = unix.to_string();
        let h = headers(&[(ZENDESK_SIGNATURE, &sig(&ts)), (ZENDESK_TIMESTAMP, &ts)]);
        let pending = v.headers(&h, now).unwrap();
        assert!(pending.body(b"{}").unwrap().is_some());
        let old = (unix - 3600).to_string();
        let h = headers(&[(ZENDESK_SIGNATURE, &sig(&old)), (ZENDESK_TIMESTAMP, &old)]);
        assert!(matches!(v.headers(&h, now), Err(Refusal::Stale { .. })));
    }

    #[test]
    fn jira_hub_signature_over_the_body() {
        let v = Verifier::new(
            &IngestAuth::HubSignature {
                secret: secret("It's a Secret to Everybody"),
            },
            TOLERANCE,
        )
        .unwrap();
        let body = b"Hello, World!";
        let good = headers(&[(
            HUB_SIGNATURE,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        let now = SystemTime::now();
        assert!(v.headers(&good, now).unwrap().body(body).unwrap().is_some());
        assert_eq!(
            v.headers(&good, now)
                .unwrap()
                .body(b"Hello, World?")
                .unwrap_err(),
            Refusal::BadSignature
        );
        let sha1 = headers(&[(HUB_SIGNATURE, "sha1=0123")]);
        assert!(matches!(v.headers(&sha1, now), Err(Refusal::Malformed(_))));
        assert_eq!(
            v.headers(&HeaderMap::new(), now).err(),
            Some(Refusal::Missing(HUB_SIGNATURE))
        );
    }

    #[test]
    fn generic_signature_with_and_without_timestamp() {
        let key = secret("generic-secret");
        let with_ts = Verifier::new(
            &IngestAuth::Hmac {
                secret: key.clone(),
                signature_header: "x-triage-signature".into(),
                timestamp_header: Some("x-triage-timestamp".into()),
            },
            TOLERANCE,
        )
        .unwrap();
        let body = br#"{"id":"G-1","body":"help"}"#;
        let ts = "1700000000";
        let sig = to_hex(&hmac_sha256(
            b"generic-secret",
            &[ts.as_bytes(), b".", body],
        ));
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        for value in [format!("sha256={sig}"), sig.clone(), sig.to_uppercase()] {
            let h = headers(&[("x-triage-signature", &value), ("x-triage-timestamp", ts)]);
            assert!(
                with_ts.headers(&h, now).unwrap().body(body).is_ok(),
                "{value}"
            );
        }
        let h = headers(&[("x-triage-signature", &sig), ("x-triage-timestamp", ts)]);
        let late = UNIX_EPOCH + Duration::from_secs(1_700_000_301);
        assert!(with_ts.headers(&h, late).err().unwrap().is_stale());
        let no_ts = headers(&[("x-triage-signature", &sig)]);
        assert_eq!(
            with_ts.headers(&no_ts, now).err(),
            Some(Refusal::MissingConfigured("x-triage-timestamp".into()))
        );

        let body_only = Verifier::new(
            &IngestAuth::Hmac {
                secret: key,
                signature_header: "x-signature".into(),
                timestamp_header: None,
            },
            TOLERANCE,
        )
        .unwrap();
        let sig = to_hex(&hmac_sha256(b"generic-secret", &[body]));
        let h = headers(&[("x-signature", &sig)]);
        assert!(body_only.headers(&h, now).unwrap().body(body).is_ok());
        assert_eq!(
            body_only.headers(&h, now).unwrap().body(b"{}").unwrap_err(),
            Refusal::BadSignature
        );
    }

    #[test]
    fn shared_token_and_basic_auth() {
        let now = SystemTime::now();
        let token = Verifier::new(
            &IngestAuth::Token {
                header: "x-triage-token".into(),
                token: secret("t0ken"),
            },
            TOLERANCE,
        )
        .unwrap();
        let ok = token
            .headers(&headers(&[("x-triage-token", "t0ken")]), now)
            .unwrap();
        assert_eq!(ok.body(b"anything").unwrap(), None, "no replay key");
        for wrong in ["t0ke", "t0ken0", "T0KEN", ""] {
            let h = headers(&[("x-triage-token", wrong)]);
            assert_eq!(
                token.headers(&h, now).err(),
                Some(Refusal::BadCredentials),
                "{wrong:?}"
            );
        }
        assert!(matches!(
            token.headers(&HeaderMap::new(), now),
            Err(Refusal::MissingConfigured(_))
        ));

        let basic = Verifier::new(
            &IngestAuth::Basic {
                username: "freshdesk".into(),
                password: secret("pa:ss"),
            },
            TOLERANCE,
        )
        .unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let h = |v: String| headers(&[("authorization", &v)]);
        assert!(basic
            .headers(&h(format!("Basic {}", b64("freshdesk:pa:ss"))), now)
            .is_ok());
        assert!(basic
            .headers(&h(format!("basic {}", b64("freshdesk:pa:ss"))), now)
            .is_ok());
        for bad in [
            format!("Basic {}", b64("freshdesk:pa:sx")),
            format!("Basic {}", b64("freshdesx:pa:ss")),
            format!("Basic {}", b64("freshdesk")),
            format!("Bearer {}", b64("freshdesk:pa:ss")),
            "Basic !!!".to_string(),
        ] {
            assert_eq!(
                basic.headers(&h(bad.clone()), now).err(),
                Some(Refusal::BadCredentials),
                "{bad}"
            );
        }
        assert_eq!(
            basic.headers(&HeaderMap::new(), now).err(),
            Some(Refusal::Missing("authorization"))
        );
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2021-03-25T05:09:27Z"), Some(1_616_648_967));
        assert_eq!(
            parse_rfc3339("2021-03-25T07:09:27+02:00"),
            Some(1_616_648_967)
        );
        assert_eq!(
            parse_rfc3339("2021-03-25T05:09:27.999Z"),
            Some(1_616_648_967)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:00:00-01:30"),
            Some(951_825_600 + 5400)
        );
        for bad in [
            "",
            "2021-03-25",
            "2021-03-25T05:09:27",
            "2021-13-25T05:09:27Z",
            "2021-03-25T05:09:27.Z",
            "2021-03-25T05:09:27+0200",
            "2021-03-25T05:09:27Zjunk",
            "1616648967",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
