//! ACMG PP4 evidence levels from a syndrome's gestalt score.
//!
//! Consumes a syndrome's optional gestalt-score thresholds ([`Pp4Thresholds`], stored in the
//! gallery, read from the labels CSV or the imported syndromes table) and a gestalt score;
//! produces the level the reference service reports as `ACMG_PP4` (`very_strong`, `strong`,
//! `moderate`, `supporting`: the first, in that order, whose threshold the score reaches, else
//! empty) and `ACMG_PP4_support` ("Yes" when the syndrome has thresholds, else
//! "Not available yet"). Thresholds are calibrated on single photos, so a fused query's levels
//! are withheld ([`WITHHELD_FUSED`]).

use serde::{Deserialize, Serialize};

/// `ACMG_PP4_support` for a syndrome with thresholds.
pub const SUPPORT_YES: &str = "Yes";
/// `ACMG_PP4_support` for a syndrome without thresholds.
pub const SUPPORT_NONE: &str = "Not available yet";
/// `ACMG_PP4_support` of a query fused from several photos.
pub const WITHHELD_FUSED: &str =
    "Withheld: PP4 thresholds are calibrated on single photos, this query fuses several";

/// The level names, strongest first (the order levels are tried in).
pub const LEVELS: [&str; 4] = ["very_strong", "strong", "moderate", "supporting"];

/// Per-syndrome gestalt-score thresholds, each optional (the reference allows a syndrome to
/// have only some levels). Invariant (checked by [`Pp4Thresholds::new`]): every present value
/// is finite and very_strong >= strong >= moderate >= supporting among those present.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pp4Thresholds {
    /// Gestalt score for `very_strong`.
    pub very_strong: Option<f32>,
    /// Gestalt score for `strong`.
    pub strong: Option<f32>,
    /// Gestalt score for `moderate`.
    pub moderate: Option<f32>,
    /// Gestalt score for `supporting`.
    pub supporting: Option<f32>,
}

impl Pp4Thresholds {
    /// Thresholds in [`LEVELS`] order; the error is a sentence naming the problem.
    pub fn new(levels: [Option<f32>; 4]) -> Result<Pp4Thresholds, String> {
        let mut last: Option<(usize, f32)> = None;
        for (i, v) in levels.iter().enumerate() {
            let Some(v) = *v else { continue };
            if !v.is_finite() {
                return Err(format!(
                    "PP4 threshold {} is not a finite number",
                    LEVELS[i]
                ));
            }
            if let Some((j, w)) = last {
                if v > w {
                    return Err(format!(
                        "PP4 thresholds are not ordered: {} {v} is above {} {w} (need very_strong >= strong >= moderate >= supporting)",
                        LEVELS[i], LEVELS[j]
                    ));
                }
            }
            last = Some((i, v));
        }
        let [very_strong, strong, moderate, supporting] = levels;
        Ok(Pp4Thresholds {
            very_strong,
            strong,
            moderate,
            supporting,
        })
    }

    /// Parses four text cells (very_strong, strong, moderate, supporting); empty cells (or
    /// `-`, `NA`, `nan`) are absent levels. `Ok(None)` when all four are absent.
    pub fn parse(cells: [&str; 4]) -> Result<Option<Pp4Thresholds>, String> {
        let mut levels = [None; 4];
        for (i, c) in cells.iter().enumerate() {
            let c = c.trim();
            if c.is_empty()
                || c == "-"
                || c.eq_ignore_ascii_case("na")
                || c.eq_ignore_ascii_case("nan")
            {
                continue;
            }
            let v: f32 = c
                .parse()
                .map_err(|_| format!("PP4 threshold {} '{c}' is not a number", LEVELS[i]))?;
            levels[i] = Some(v);
        }
        if levels.iter().all(Option::is_none) {
            return Ok(None);
        }
        Pp4Thresholds::new(levels).map(Some)
    }

    /// The thresholds in [`LEVELS`] order.
    pub fn levels(&self) -> [Option<f32>; 4] {
        [
            self.very_strong,
            self.strong,
            self.moderate,
            self.supporting,
        ]
    }

    /// True when no level has a threshold.
    pub fn is_empty(&self) -> bool {
        self.levels().iter().all(Option::is_none)
    }

    /// The first level (strongest first) whose threshold `score` reaches (`>=`), else "".
    pub fn level(&self, gestalt_score: f32) -> &'static str {
        LEVELS
            .iter()
            .zip(self.levels())
            .find(|(_, t)| t.is_some_and(|t| gestalt_score >= t))
            .map_or("", |(name, _)| name)
    }
}

/// Positions of the four threshold columns in a header, in [`LEVELS`] order. A column is
/// named after its level, optionally with a `pp4_` prefix, in any case (`very_strong`,
/// `PP4_strong`, ...).
pub fn columns<'a>(headers: impl IntoIterator<Item = &'a str>) -> [Option<usize>; 4] {
    let mut out = [None; 4];
    for (i, h) in headers.into_iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        let h = h.strip_prefix("pp4_").unwrap_or(&h);
        if let Some(l) = LEVELS.iter().position(|l| *l == h) {
            out[l].get_or_insert(i);
        }
    }
    out
}

/// The thresholds of one row: the cells at `cols` (missing cells are empty). The error is a
/// sentence as [`Pp4Thresholds::parse`] gives it.
pub fn from_row<'a>(
    cols: &[Option<usize>; 4],
    cell: impl Fn(usize) -> Option<&'a str>,
) -> Result<Option<Pp4Thresholds>, String> {
    let get = |c: Option<usize>| c.and_then(&cell).unwrap_or("");
    Pp4Thresholds::parse([get(cols[0]), get(cols[1]), get(cols[2]), get(cols[3])])
}

/// `(ACMG_PP4, ACMG_PP4_support)` for a syndrome with thresholds `t` (or none) at `score`.
pub fn assess(t: Option<&Pp4Thresholds>, gestalt_score: f32) -> (&'static str, &'static str) {
    match t.filter(|t| !t.is_empty()) {
        Some(t) => (t.level(gestalt_score), SUPPORT_YES),
        None => ("", SUPPORT_NONE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Pp4Thresholds {
        Pp4Thresholds::new([Some(0.9), Some(0.8), Some(0.7), Some(0.6)]).unwrap()
    }

    #[test]
    fn levels_at_the_boundaries() {
        let t = t();
        assert_eq!(t.level(0.9), "very_strong");
        assert_eq!(t.level(0.899_999), "strong");
        assert_eq!(t.level(0.8), "strong");
        assert_eq!(t.level(0.7999), "moderate");
        assert_eq!(t.level(0.7), "moderate");
        assert_eq!(t.level(0.6), "supporting");
        assert_eq!(t.level(0.5999), "");
        assert_eq!(t.level(1.3), "very_strong");
        assert_eq!(assess(Some(&t), 0.1), ("", SUPPORT_YES));
        assert_eq!(assess(None, 1.0), ("", SUPPORT_NONE));
        assert_eq!(
            assess(Some(&Pp4Thresholds::default()), 1.0),
            ("", SUPPORT_NONE)
        );
    }

    #[test]
    fn partial_thresholds_skip_absent_levels() {
        let t = Pp4Thresholds::parse(["", "0.8", "", "0.5"])
            .unwrap()
            .unwrap();
        assert_eq!(t.level(0.85), "strong");
        assert_eq!(t.level(0.79), "supporting");
        assert_eq!(t.level(0.49), "");
        assert_eq!(Pp4Thresholds::parse(["", " ", "NA", "-"]).unwrap(), None);
    }

    #[test]
    fn finds_columns_by_name() {
        let h = ["image", "PP4_Strong", "label", "supporting", "very_strong"];
        let cols = columns(h);
        assert_eq!(cols, [Some(4), Some(1), None, Some(3)]);
        let row = ["x", "0.8", "L", "0.6", "0.9"];
        let t = from_row(&cols, |i| row.get(i).copied()).unwrap().unwrap();
        assert_eq!(t.levels(), [Some(0.9), Some(0.8), None, Some(0.6)]);
        assert_eq!(from_row(&columns(["a"]), |_| Some("1")).unwrap(), None);
    }

    #[test]
    fn refuses_unordered_and_non_numeric() {
        let e = Pp4Thresholds::parse(["0.7", "0.8", "", ""]).unwrap_err();
        assert!(e.contains("not ordered") && e.contains("strong 0.8"), "{e}");
        let e = Pp4Thresholds::parse(["", "", "0.5", "0.6"]).unwrap_err();
        assert!(e.contains("supporting 0.6"), "{e}");
        let e = Pp4Thresholds::parse(["high", "", "", ""]).unwrap_err();
        assert!(e.contains("very_strong 'high'"), "{e}");
        assert!(Pp4Thresholds::parse(["inf", "", "", ""]).is_err());
        // equal thresholds are ordered
        assert!(Pp4Thresholds::parse(["0.8", "0.8", "0.8", "0.8"]).is_ok());
    }
}
