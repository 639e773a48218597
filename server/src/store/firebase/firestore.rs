//! A small client for the Firestore REST API (v1): single documents, paged
//! listings, queries with cursors, `findNearest`, and atomic commits.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::auth::Auth;
use super::http::{Caller, FirebaseError, Http, is_transient_transport, may_retry};

/// Firestore refuses commits with more writes than this.
pub const MAX_WRITES_PER_COMMIT: usize = 500;

/// Encoders for Firestore's typed values.
pub mod value {
    use serde_json::{Value, json};

    pub fn string(s: &str) -> Value {
        json!({ "stringValue": s })
    }

    pub fn integer(i: i64) -> Value {
        json!({ "integerValue": i.to_string() })
    }

    pub fn double(d: f64) -> Value {
        json!({ "doubleValue": d })
    }

    pub fn boolean(b: bool) -> Value {
        json!({ "booleanValue": b })
    }

    pub fn null() -> Value {
        json!({ "nullValue": null })
    }

    pub fn optional<T>(value: Option<T>, encode: impl FnOnce(T) -> Value) -> Value {
        value.map_or_else(null, encode)
    }

    /// A vector value, as `findNearest` needs it.
    pub fn vector(values: &[f32]) -> Value {
        let values: Vec<Value> = values.iter().map(|&v| double(f64::from(v))).collect();
        json!({ "mapValue": { "fields": {
            "__type__": { "stringValue": "__vector__" },
            "value": { "arrayValue": { "values": values } },
        }}})
    }
}

/// A document as read, with typed accessors that fail on missing or
/// mistyped fields.
#[derive(Clone, Debug)]
pub struct Doc {
    pub name: String,
    pub fields: Map<String, Value>,
}

impl Doc {
    fn from_json(mut value: Value) -> Result<Self, FirebaseError> {
        let name = value["name"]
            .as_str()
            .ok_or_else(|| FirebaseError::decode("a Firestore document", "it has no name"))?
            .to_owned();
        let fields = match value["fields"].take() {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        Ok(Self { name, fields })
    }

    /// The document's id, the last segment of its name.
    pub fn id(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or_default()
    }

    /// The id of the document this one sits under (`people/P/faces/F` -> `P`).
    pub fn parent_id(&self) -> Option<&str> {
        self.name.rsplit('/').nth(2)
    }

    fn corrupt(&self, key: &str, expected: &str) -> FirebaseError {
        FirebaseError::decode(
            "Firestore",
            format!("field {key} of {} is not {expected}", self.id()),
        )
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|value| value.get("nullValue").is_none())
    }

    pub fn string(&self, key: &str) -> Result<String, FirebaseError> {
        self.opt_string(key)?.ok_or_else(|| self.corrupt(key, "a string"))
    }

    pub fn opt_string(&self, key: &str) -> Result<Option<String>, FirebaseError> {
        self.present(key)
            .map(|value| {
                value["stringValue"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.corrupt(key, "a string"))
            })
            .transpose()
    }

    pub fn integer(&self, key: &str) -> Result<i64, FirebaseError> {
        self.opt_integer(key)?.ok_or_else(|| self.corrupt(key, "an integer"))
    }

    pub fn opt_integer(&self, key: &str) -> Result<Option<i64>, FirebaseError> {
        self.present(key)
            .map(|value| {
                value["integerValue"]
                    .as_str()
                    .and_then(|digits| digits.parse().ok())
                    .or_else(|| value["integerValue"].as_i64())
                    .ok_or_else(|| self.corrupt(key, "an integer"))
            })
            .transpose()
    }

    pub fn opt_double(&self, key: &str) -> Result<Option<f64>, FirebaseError> {
        self.present(key)
            .map(|value| number(value).ok_or_else(|| self.corrupt(key, "a number")))
            .transpose()
    }

    /// An array of numbers.
    pub fn doubles(&self, key: &str) -> Result<Vec<f64>, FirebaseError> {
        let field = self.present(key).ok_or_else(|| self.corrupt(key, "an array of numbers"))?;
        let values = field["arrayValue"]["values"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        values
            .iter()
            .map(|value| number(value).ok_or_else(|| self.corrupt(key, "an array of numbers")))
            .collect()
    }

    pub fn boolean(&self, key: &str) -> Result<bool, FirebaseError> {
        self.present(key)
            .and_then(|value| value["booleanValue"].as_bool())
            .ok_or_else(|| self.corrupt(key, "a boolean"))
    }

    pub fn vector(&self, key: &str) -> Result<Vec<f32>, FirebaseError> {
        let field = self.present(key).ok_or_else(|| self.corrupt(key, "a vector"))?;
        let inner = &field["mapValue"]["fields"];
        if inner["__type__"]["stringValue"] != "__vector__" {
            return Err(self.corrupt(key, "a vector"));
        }
        let values =
            inner["value"]["arrayValue"]["values"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        #[expect(clippy::cast_possible_truncation, reason = "stored from f32, read back as f32")]
        values
            .iter()
            .map(|value| {
                number(value).map(|v| v as f32).ok_or_else(|| self.corrupt(key, "a vector"))
            })
            .collect()
    }
}

#[expect(clippy::cast_precision_loss, reason = "integers stored where a double was expected")]
fn number(value: &Value) -> Option<f64> {
    value["doubleValue"].as_f64().or_else(|| {
        value["integerValue"].as_str().and_then(|s| s.parse::<i64>().ok()).map(|i| i as f64)
    })
}

/// The Firestore database of one project.
pub struct Firestore {
    pub http: Http,
    pub auth: Auth,
    pub caller: Caller,
    /// `BASE/v1/projects/P/databases/D/documents`.
    url: String,
    /// `projects/P/databases/D/documents`.
    root: String,
    pub page_size: u32,
}

impl Firestore {
    pub fn new(
        http: Http,
        auth: Auth,
        caller: Caller,
        base: &str,
        database: &str,
        page_size: u32,
    ) -> Self {
        let root = format!("projects/{}/databases/{database}/documents", caller.project);
        Self { http, auth, caller, url: format!("{base}/v1/{root}"), root, page_size }
    }

    /// The full name of the document at `path`, e.g. `people/123`.
    pub fn name(&self, path: &str) -> String {
        format!("{}/{path}", self.root)
    }

    async fn call(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, FirebaseError> {
        let response = self
            .http
            .send(what, Some(&self.caller), || async {
                let mut request = self.http.client.request(method.clone(), url);
                if let Some(body) = body {
                    request = request.json(body);
                }
                self.auth.authorise(request).await
            })
            .await?;
        response.json().await.map_err(|e| FirebaseError::decode(what, e.to_string()))
    }

    /// The document at `path`, or `None` when there is none.
    pub async fn get(&self, path: &str) -> Result<Option<Doc>, FirebaseError> {
        let url = format!("{}/{path}", self.url);
        match self.call("reading a Firestore document", Method::GET, &url, None).await {
            Ok(json) => Doc::from_json(json).map(Some),
            Err(error) if error.has_status(StatusCode::NOT_FOUND) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every document of the collection at `path`, one page of `page_size` at
    /// a time; `mask` limits the fields read (empty: all).
    pub async fn list(&self, path: &str, mask: &[&str]) -> Result<Vec<Doc>, FirebaseError> {
        let mut docs = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!("{}/{path}?pageSize={}", self.url, self.page_size);
            for field in mask {
                url.push_str(&format!("&mask.fieldPaths={field}"));
            }
            if let Some(token) = &page_token {
                url.push_str("&pageToken=");
                url.push_str(
                    &percent_encoding::utf8_percent_encode(token, super::storage::COMPONENT)
                        .to_string(),
                );
            }
            let mut page =
                self.call("listing Firestore documents", Method::GET, &url, None).await?;
            if let Value::Array(found) = page["documents"].take() {
                for doc in found {
                    docs.push(Doc::from_json(doc)?);
                }
            }
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_owned()),
                _ => return Ok(docs),
            }
        }
    }

    /// Runs one structured query (which may hold `findNearest`) and returns
    /// its documents.
    pub async fn run_query(&self, query: &Value) -> Result<Vec<Doc>, FirebaseError> {
        let url = format!("{}:runQuery", self.url);
        let body = json!({ "structuredQuery": query });
        let answer = self.call("a Firestore query", Method::POST, &url, Some(&body)).await?;
        let mut docs = Vec::new();
        for mut item in answer.as_array().cloned().unwrap_or_default() {
            if item["document"].is_object() {
                docs.push(Doc::from_json(item["document"].take())?);
            }
        }
        Ok(docs)
    }

    /// Runs `query` page by page with cursors, up to `max` documents.
    /// `order` must name the query's `orderBy` fields (the document name
    /// `__name__` last), and each must be read (not masked away).
    pub async fn query_pages(
        &self,
        query: &Value,
        order: &[&str],
        max: Option<usize>,
    ) -> Result<Vec<Doc>, FirebaseError> {
        let mut docs: Vec<Doc> = Vec::new();
        loop {
            let wanted = max.map_or(self.page_size as usize, |max| {
                (max - docs.len()).min(self.page_size as usize)
            });
            if wanted == 0 {
                return Ok(docs);
            }
            let mut page_query = query.clone();
            page_query["limit"] = json!(wanted);
            if let Some(last) = docs.last() {
                let values: Vec<Value> = order
                    .iter()
                    .map(|field| match *field {
                        "__name__" => json!({ "referenceValue": last.name }),
                        field => last.fields.get(field).cloned().unwrap_or_else(value::null),
                    })
                    .collect();
                page_query["startAt"] = json!({ "values": values, "before": false });
            }
            let page = self.run_query(&page_query).await?;
            let complete = page.len() < wanted;
            docs.extend(page);
            if complete {
                return Ok(docs);
            }
        }
    }

    /// Applies `writes` atomically (at most [`MAX_WRITES_PER_COMMIT`]).
    ///
    /// A commit is not idempotent, so it is sent again only when it surely
    /// was not applied, or when its probe (the first document it creates with
    /// an `exists: false` precondition) shows that it was not. When neither
    /// can be told, the error is [`FirebaseError::Unconfirmed`].
    pub async fn commit(&self, writes: &[Value]) -> Result<(), FirebaseError> {
        let what = "a Firestore commit";
        // Enforced here, not left to production to refuse: the emulator
        // accepts larger commits, so tests would not notice a missing split.
        if writes.len() > MAX_WRITES_PER_COMMIT {
            return Err(FirebaseError::Config(format!(
                "a commit of {} writes (Firestore takes at most {MAX_WRITES_PER_COMMIT})",
                writes.len()
            )));
        }
        let url = format!("{}:commit", self.url);
        let body = json!({ "writes": writes });
        let probe = writes
            .iter()
            .find(|write| write["currentDocument"]["exists"] == false)
            .and_then(|write| {
                write["update"]["name"]
                    .as_str()
                    .and_then(|name| name.strip_prefix(&format!("{}/", self.root)))
            });
        let mut attempt = 0;
        loop {
            let request = self.auth.authorise(self.http.client.post(&url).json(&body)).await?;
            let error = match self.http.send_once(what, Some(&self.caller), request).await {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            let not_applied = error.has_code("ABORTED")
                || error.has_status(StatusCode::TOO_MANY_REQUESTS)
                || matches!(&error, FirebaseError::Transport { source, .. } if source.is_connect());
            let retryable = not_applied || may_retry(&error);
            let ambiguous = retryable && !not_applied;
            if ambiguous {
                // The commit may have been applied though its answer was lost.
                match probe {
                    Some(path) => match self.get(path).await {
                        Ok(Some(_)) => return Ok(()),
                        Ok(None) => {}
                        Err(_) => return Err(unconfirmed(what, &error)),
                    },
                    None if !is_idempotent(writes) => return Err(unconfirmed(what, &error)),
                    None => {}
                }
            }
            if !retryable || attempt >= self.http.retry.retries {
                return Err(error);
            }
            tracing::debug!(attempt, %error, "retrying a Firestore commit");
            tokio::time::sleep(self.http.retry.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Runs a `findNearest` query.
    pub async fn find_nearest(&self, query: &Value) -> Result<Vec<Doc>, FirebaseError> {
        self.run_query(query).await
    }
}

/// Deletes and plain updates may be applied twice with the same result;
/// transforms such as `increment` may not.
fn is_idempotent(writes: &[Value]) -> bool {
    writes
        .iter()
        .all(|write| write.get("updateTransforms").is_none() && write.get("transform").is_none())
}

fn unconfirmed(what: &str, error: &FirebaseError) -> FirebaseError {
    let transport =
        matches!(error, FirebaseError::Transport { source, .. } if is_transient_transport(source));
    FirebaseError::Unconfirmed {
        what: what.to_owned(),
        message: format!("{error}{}", if transport { " (the answer was lost)" } else { "" }),
    }
}
