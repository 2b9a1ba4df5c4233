//! The optional audit log: one JSON line per capture.
//!
//! Consumes a [`Prediction`] and the time; produces a line with the time (UTC, RFC 3339),
//! bundle id, model and gallery versions and the top-5 syndromes with their scores and PP4
//! levels. Never pixels, embeddings, file names or landmarks: the log says what the device
//! suggested and with which models, not who was photographed. Each line is appended with a
//! single write on a file opened in append mode, then synced, so concurrent writers never
//! interleave lines.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::pipeline::Prediction;
use crate::{Error, Result};

/// One suggested syndrome in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditHit {
    /// Syndrome name.
    pub syndrome_name: String,
    /// OMIM number, when known.
    pub omim_id: Option<u32>,
    /// Mean cosine distance.
    pub distance: f32,
    /// `1.3 - distance`.
    pub gestalt_score: f32,
    /// The ACMG PP4 level shown with it ("" when none reached, withheld or not available).
    #[serde(rename = "ACMG_PP4")]
    pub acmg_pp4: String,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// UTC time of the result, RFC 3339 (`2026-01-31T12:00:00Z`).
    pub time: String,
    /// Model bundle id.
    pub bundle_id: String,
    /// Bundle name and version.
    pub model_version: String,
    /// Gallery version.
    pub gallery_version: String,
    /// The five most similar syndromes, nearest first.
    pub top5: Vec<AuditHit>,
}

impl AuditRecord {
    /// The record for `p` at `unix_seconds` (seconds since 1970-01-01 UTC).
    pub fn new(p: &Prediction, unix_seconds: u64) -> AuditRecord {
        AuditRecord {
            time: rfc3339_utc(unix_seconds),
            bundle_id: p.bundle_id.clone(),
            model_version: p.model_version.clone(),
            gallery_version: p.gallery_version.clone(),
            top5: p
                .suggested_syndromes_list
                .iter()
                .take(5)
                .map(|s| AuditHit {
                    syndrome_name: s.syndrome_name.clone(),
                    omim_id: s.omim_id,
                    distance: s.distance,
                    gestalt_score: s.gestalt_score,
                    acmg_pp4: s.acmg_pp4.clone(),
                })
                .collect(),
        }
    }
}

/// `unix_seconds` as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // civil-from-days (H. Hinnant), era of 400 years
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Appends `record` to the log at `path` (created if missing) as one line.
pub fn append(path: &Path, record: &AuditRecord) -> Result<()> {
    let mut line =
        serde_json::to_vec(record).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    line.push(b'\n');
    // a new log is owner-only (it names what was found for a patient)
    let mut f = crate::fsio::open_append(path, crate::fsio::Access::Private)?;
    // one write call on an O_APPEND file: the line lands whole, after any other
    f.write_all(&line).map_err(|e| Error::io(path, e))?;
    crate::fsio::sync_appended(&f, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let rec = AuditRecord {
            time: rfc3339_utc(0),
            bundle_id: "abc".into(),
            model_version: "m 1".into(),
            gallery_version: "g".into(),
            top5: vec![AuditHit {
                syndrome_name: "Noonan syndrome".into(),
                omim_id: Some(163950),
                distance: 0.5,
                gestalt_score: 0.8,
                acmg_pp4: "supporting".into(),
            }],
        };
        append(&log, &rec).unwrap();
        append(&log, &rec).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["top5"][0]["omim_id"], 163950);
        assert_eq!(v["top5"][0]["ACMG_PP4"], "supporting");
        assert_eq!(v["time"], "1970-01-01T00:00:00Z");
        assert!(append(&dir.path().join("no/such/log"), &rec).is_err());
    }
}
