//! A small client for the Cloud Storage JSON API: upload, download, delete
//! and list objects of one bucket. Objects are private; FaceGate never makes
//! public or token URLs for them.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::auth::Auth;
use super::http::{Caller, FirebaseError, Http};

/// Everything but RFC 3986's unreserved characters is escaped, so an object
/// name (which holds `/`) is one path segment or one query value.
pub const COMPONENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// An object as listed.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub name: String,
    /// When it was written, ms since the epoch (0 when unknown).
    pub created_ms: i64,
}

pub struct Storage {
    pub http: Http,
    pub auth: Auth,
    pub caller: Caller,
    base: String,
    pub bucket: String,
}

impl Storage {
    pub fn new(http: Http, auth: Auth, caller: Caller, base: &str, bucket: &str) -> Self {
        Self { http, auth, caller, base: base.to_owned(), bucket: bucket.to_owned() }
    }

    fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            utf8_percent_encode(&self.bucket, COMPONENT),
            utf8_percent_encode(name, COMPONENT)
        )
    }

    /// Stores `bytes` as the JPEG object `name`, replacing any object of that
    /// name (so the upload may safely be sent again).
    pub async fn upload(&self, name: &str, bytes: &[u8]) -> Result<(), FirebaseError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.base,
            utf8_percent_encode(&self.bucket, COMPONENT),
            utf8_percent_encode(name, COMPONENT)
        );
        self.http
            .send("uploading to Cloud Storage", Some(&self.caller), || async {
                let request = self
                    .http
                    .client
                    .post(&url)
                    .header(CONTENT_TYPE, "image/jpeg")
                    .body(bytes.to_vec());
                self.auth.authorise(request).await
            })
            .await?;
        Ok(())
    }

    /// The bytes of object `name`, or `None` when there is none.
    pub async fn download(&self, name: &str) -> Result<Option<Vec<u8>>, FirebaseError> {
        let url = format!("{}?alt=media", self.object_url(name));
        let what = "downloading from Cloud Storage";
        let sent = self
            .http
            .send(what, Some(&self.caller), || async {
                self.auth.authorise(self.http.client.get(&url)).await
            })
            .await;
        match sent {
            Ok(response) => {
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|source| FirebaseError::Transport { what: what.to_owned(), source })?;
                Ok(Some(bytes.to_vec()))
            }
            Err(error) if error.has_status(StatusCode::NOT_FOUND) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Deletes object `name`; one that is already gone is no error.
    pub async fn delete(&self, name: &str) -> Result<(), FirebaseError> {
        let url = self.object_url(name);
        let sent = self
            .http
            .send("deleting from Cloud Storage", Some(&self.caller), || async {
                self.auth.authorise(self.http.client.delete(&url)).await
            })
            .await;
        match sent {
            Err(error) if !error.has_status(StatusCode::NOT_FOUND) => Err(error),
            _ => Ok(()),
        }
    }

    /// Deletes each object, logging (not returning) failures: a leftover
    /// object is unreachable and is removed by the next sweep.
    pub async fn delete_all(&self, names: &[String]) {
        for name in names {
            if let Err(error) = self.delete(name).await {
                tracing::warn!(%error, "could not delete an object; the next sweep removes it");
            }
        }
    }

    /// Every object whose name starts with `prefix`, page by page.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, FirebaseError> {
        let what = "listing Cloud Storage objects";
        let mut objects = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/storage/v1/b/{}/o?prefix={}&fields=items(name,timeCreated),nextPageToken",
                self.base,
                utf8_percent_encode(&self.bucket, COMPONENT),
                utf8_percent_encode(prefix, COMPONENT)
            );
            if let Some(token) = &page_token {
                url.push_str(&format!("&pageToken={}", utf8_percent_encode(token, COMPONENT)));
            }
            let page: Value = self
                .http
                .send(what, Some(&self.caller), || async {
                    self.auth.authorise(self.http.client.get(&url)).await
                })
                .await?
                .json()
                .await
                .map_err(|e| FirebaseError::decode(what, e.to_string()))?;
            for item in page["items"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let Some(name) = item["name"].as_str() else { continue };
                let created_ms = item["timeCreated"].as_str().and_then(rfc3339_ms).unwrap_or(0);
                objects.push(ObjectInfo { name: name.to_owned(), created_ms });
            }
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_owned()),
                _ => return Ok(objects),
            }
        }
    }

    /// Checks that the bucket answers (and that this credential may list it).
    pub async fn probe(&self) -> Result<(), FirebaseError> {
        let url = format!(
            "{}/storage/v1/b/{}/o?maxResults=1&fields=nextPageToken",
            self.base,
            utf8_percent_encode(&self.bucket, COMPONENT)
        );
        self.http
            .send("listing the Cloud Storage bucket", Some(&self.caller), || async {
                self.auth.authorise(self.http.client.get(&url)).await
            })
            .await?;
        Ok(())
    }

    /// Creates the bucket (for the emulator; production buckets are made in
    /// the Firebase console). One that exists already is no error.
    pub async fn create_bucket(&self) -> Result<(), FirebaseError> {
        let url = format!(
            "{}/storage/v1/b?project={}",
            self.base,
            utf8_percent_encode(&self.caller.project, COMPONENT)
        );
        let body = serde_json::json!({ "name": self.bucket });
        let sent = self
            .http
            .send("creating a Cloud Storage bucket", Some(&self.caller), || async {
                self.auth.authorise(self.http.client.post(&url).json(&body)).await
            })
            .await;
        match sent {
            Err(error) if !error.has_status(StatusCode::CONFLICT) => Err(error),
            _ => Ok(()),
        }
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time such as
/// `2024-05-01T12:30:00.123Z`.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock = clock.splitn(3, ':').map(str::parse::<i64>);
    let (hour, minute, second) = (clock.next()?.ok()?, clock.next()?.ok()?, clock.next()?.ok()?);
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;

    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's method.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_one_escaped_component() {
        let escaped = utf8_percent_encode("people/ab 1/c+d.jpg", COMPONENT).to_string();
        assert_eq!(escaped, "people%2Fab%201%2Fc%2Bd.jpg");
    }

    #[test]
    fn rfc3339_times_become_epoch_milliseconds() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2000-03-01T00:00:01.5Z"), Some(951_868_801_500));
        assert_eq!(rfc3339_ms("2026-12-04T17:44:13.231358Z"), Some(1_796_406_253_231));
        assert_eq!(rfc3339_ms("yesterday"), None);
    }
}
