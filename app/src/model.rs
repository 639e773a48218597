//! The records FaceGate shows and exchanges: people and check-ins. Shared by
//! the server (store, JSON API) and the browser (pages), so plain data only.

use serde::{Deserialize, Serialize};

/// An enrolled person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Number of enrolled photos (each holds one face).
    pub photos: u32,
    /// When the person last checked in, if ever (ms since the epoch).
    pub last_check_in_ms: Option<i64>,
    /// Their first photo, to show beside their name.
    pub cover_photo_id: Option<String>,
}

/// A stored photo of a person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Photo {
    pub id: String,
    pub person_id: String,
    /// SHA-256 of the uploaded bytes, hex; identical uploads are skipped.
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub created_ms: i64,
}

/// One entry of the check-in log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckIn {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The recognised person; `None` for a stranger, or once the person was
    /// deleted.
    pub person_id: Option<String>,
    /// The person's name at check-in time; kept after deletion only when the
    /// server is configured to keep names in the log.
    pub person_name: Option<String>,
    /// Cosine similarity of the best match, if anybody was enrolled.
    pub score: Option<f32>,
    /// The detector that found the face.
    pub detector: String,
    /// Whether a face thumbnail was kept for this check-in.
    pub has_thumbnail: bool,
}

/// What happened to one photo offered for enrolment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoOutcome {
    /// The photo's file name, or its position when it has none.
    pub label: String,
    pub accepted: bool,
    /// A stable machine code: `accepted`, `duplicate`, `no_face`, `many_faces`,
    /// `face_too_small`, `looks_like_other_person`, `unsupported_image`,
    /// `image_too_large`, `empty_image`, ...
    pub code: String,
    /// What a person should know or do, in words.
    pub message: String,
}

/// The answer to an enrolment: the person (when at least one photo was
/// accepted) and the fate of every photo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrolReport {
    pub person: Option<Person>,
    pub photos: Vec<PhotoOutcome>,
}

/// How a check-in attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckInStatus {
    /// The face matched an enrolled person.
    Recognised,
    /// A face was found, but it matches nobody well enough.
    Unknown,
    /// No face in the frame.
    NoFace,
    /// A face, but too small to identify reliably.
    FaceTooSmall,
}

/// The face box in image pixels, `x1 < x2`, `y1 < y2`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxPx {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoxPx {
    /// Where the box sits over an image of `width` x `height` pixels, as CSS
    /// percentages (so it follows the image when the page scales it).
    pub fn css_position(&self, width: u32, height: u32) -> String {
        let (w, h) = (width.max(1) as f32, height.max(1) as f32);
        format!(
            "left:{}%;top:{}%;width:{}%;height:{}%",
            fixed(self.x1 / w * 100.0, 2),
            fixed(self.y1 / h * 100.0, 2),
            fixed((self.x2 - self.x1) / w * 100.0, 2),
            fixed((self.y2 - self.y1) / h * 100.0, 2)
        )
    }
}

/// `value` rounded to `decimals` digits after the point. Done with integers:
/// Rust's float formatting would add some 20 KB to the browser's bundle.
pub fn fixed(value: f32, decimals: u32) -> String {
    let scale = 10_i64.pow(decimals);
    // Not a number becomes 0; the cast saturates at the ends of the range.
    let scaled = (f64::from(value) * scale as f64).round() as i64;
    let sign = if scaled < 0 { "-" } else { "" };
    let (magnitude, scale) = (scaled.unsigned_abs(), scale.unsigned_abs());
    if decimals == 0 {
        format!("{sign}{magnitude}")
    } else {
        let (whole, part) = (magnitude / scale, magnitude % scale);
        format!("{sign}{whole}.{part:0width$}", width = decimals as usize)
    }
}

/// The answer to a check-in frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckInResult {
    pub status: CheckInStatus,
    pub person_id: Option<String>,
    pub person_name: Option<String>,
    /// Cosine similarity of the best match, when anybody is enrolled.
    pub score: Option<f32>,
    /// How far the best person is ahead of the second.
    pub margin: Option<f32>,
    /// The face that was used (the largest), in frame pixels.
    pub face: Option<BoxPx>,
    /// Number of faces found in the frame.
    pub faces: u32,
    pub image_width: u32,
    pub image_height: u32,
    /// Advice when the frame could be better ("move closer", "more light").
    pub hint: Option<String>,
    /// The log entry, when this attempt was logged.
    pub check_in: Option<CheckIn>,
}

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_utc(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, in_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_796_400_000_123), "2026-12-04T16:00:00Z");
        assert_eq!(format_utc(-1_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn fixed_rounds_like_float_formatting() {
        for (value, decimals) in [(0.657, 2), (0.5, 2), (-0.006, 2), (80.0, 0), (1.23456, 3)] {
            assert_eq!(fixed(value, decimals), format!("{value:.*}", decimals as usize), "{value}");
        }
        // Unlike float formatting, no "-0.00".
        assert_eq!(fixed(-0.004, 2), "0.00");
        assert_eq!(fixed(f32::NAN, 2), "0.00");
    }

    #[test]
    fn a_box_becomes_css_percentages_of_the_image() {
        let face = BoxPx { x1: 160.0, y1: 120.0, x2: 480.0, y2: 360.0 };
        assert_eq!(
            face.css_position(640, 480),
            "left:25.00%;top:25.00%;width:50.00%;height:50.00%"
        );
        // An image without size does not divide by zero.
        assert!(!face.css_position(0, 0).contains("inf"));
    }
}

/// Which check-ins to show, newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFilter {
    pub person_id: Option<String>,
    /// Inclusive lower bound, ms since the epoch.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, ms since the epoch.
    pub to_ms: Option<i64>,
    pub limit: Option<u32>,
}

/// The server's settings, shown read-only to the admin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub detector: String,
    pub detectors: Vec<String>,
    pub threshold: f32,
    pub min_margin: f32,
    pub min_face_px: f32,
    pub store_backend: String,
    pub keep_thumbnails: bool,
    pub keep_names_in_log: bool,
    pub people: u32,
    pub faces: u32,
}

/// Milliseconds since the epoch at 00:00 UTC of a `YYYY-MM-DD` date (as an
/// HTML date input gives it); `None` for anything else.
pub fn date_to_ms(date: &str) -> Option<i64> {
    let mut parts = date.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days since 1970-01-01 from a civil date (proleptic Gregorian calendar).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some((era * 146_097 + day_of_era - 719_468) * 86_400_000)
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_format_utc() {
        for date in ["1970-01-01", "2000-02-29", "2026-12-04", "1969-12-31"] {
            let ms = date_to_ms(date).unwrap();
            assert_eq!(&format_utc(ms)[..10], date);
        }
        assert_eq!(date_to_ms("2026-13-01"), None);
        assert_eq!(date_to_ms("yesterday"), None);
    }
}

/// An API key as the admin sees it: never the key itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_ms: i64,
}

/// Faces seen in a camera preview frame, for live feedback while enrolling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FacePreview {
    pub faces: Vec<BoxPx>,
    pub image_width: u32,
    pub image_height: u32,
    /// Whether this frame would be accepted for enrolment, and why not.
    pub usable: bool,
    pub message: String,
}
