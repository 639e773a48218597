//! Access tokens for Firestore and Cloud Storage: a service-account key
//! signs a JWT (RS256), which the key's `token_uri` exchanges for an OAuth2
//! access token. Tokens are cached and fetched again before they expire.
//! The emulators need no key: the Firestore emulator takes the token `owner`,
//! the Storage emulator none.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::CONTENT_TYPE;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use super::http::{FirebaseError, Http};

/// The OAuth2 scopes FaceGate asks for: Firestore and read-write Storage.
pub const SCOPES: &str = "https://www.googleapis.com/auth/datastore https://www.googleapis.com/auth/devstorage.read_write";

/// How long a signed assertion is valid; Google accepts at most one hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// A token is fetched again this long before it expires (or after half its
/// lifetime, for short-lived tokens).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a service-account key file that FaceGate uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub token_uri: String,
    #[serde(default)]
    pub project_id: Option<String>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads a key file; the error names the file but never its contents.
    pub fn read(path: &Path) -> Result<Self, FirebaseError> {
        let failed = |message: String| FirebaseError::Credentials {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| failed(format!("not a service-account key file ({e})")))
    }
}

/// How requests to one service are authorised.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer owner`, which the Firestore emulator accepts.
    EmulatorOwner,
    /// No `Authorization` header, for the Storage emulator.
    Anonymous,
    ServiceAccount(Arc<TokenSource>),
}

impl Auth {
    /// Adds the header this service needs to `request`.
    pub async fn authorise(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, FirebaseError> {
        Ok(match self {
            Self::EmulatorOwner => request.bearer_auth("owner"),
            Self::Anonymous => request,
            Self::ServiceAccount(source) => request.bearer_auth(source.access_token().await?),
        })
    }

    /// The credential, as named in a "refused" error.
    pub fn describe(&self) -> String {
        match self {
            Self::EmulatorOwner => "the emulator's owner token".to_owned(),
            Self::Anonymous => "no credential (emulator)".to_owned(),
            Self::ServiceAccount(source) => format!(
                "service account {} (key file {})",
                source.account.client_email,
                source.path.display()
            ),
        }
    }
}

struct Token {
    value: String,
    refresh_at: Instant,
}

/// Signs assertions with a service account's key and keeps the access token.
pub struct TokenSource {
    account: ServiceAccount,
    path: PathBuf,
    key: RsaKeyPair,
    http: Http,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl TokenSource {
    pub fn from_file(path: &Path, http: Http) -> Result<Self, FirebaseError> {
        let account = ServiceAccount::read(path)?;
        let key = parse_private_key(&account.private_key).map_err(|message| {
            FirebaseError::Credentials { path: path.display().to_string(), message }
        })?;
        Ok(Self { account, path: path.to_owned(), key, http, token: tokio::sync::Mutex::new(None) })
    }

    /// A valid access token, from the cache or freshly fetched.
    pub async fn access_token(&self) -> Result<String, FirebaseError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|token| Instant::now() < token.refresh_at) {
            return Ok(token.value.clone());
        }
        let token = self.fetch().await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    async fn fetch(&self) -> Result<Token, FirebaseError> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }

        let failed = |message: String| FirebaseError::Token {
            account: self.account.client_email.clone(),
            token_uri: self.account.token_uri.clone(),
            message,
        };
        let requested = Instant::now();
        let assertion = self.assertion().map_err(failed)?;
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let response = self
            .http
            .send("the token request", None, || async {
                Ok(self
                    .http
                    .client
                    .post(&self.account.token_uri)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body.clone()))
            })
            .await
            .map_err(|error| failed(error.to_string()))?;
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| failed(format!("the answer is not a token ({e})")))?;

        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        tracing::debug!(lifetime_s = lifetime.as_secs(), "fetched a Firebase access token");
        Ok(Token { value: answer.access_token, refresh_at: requested + lifetime - margin })
    }

    /// The signed JWT that asks for a token with [`SCOPES`].
    fn assertion(&self) -> Result<String, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "kid": self.account.private_key_id,
        });
        let claims = serde_json::json!({
            "iss": self.account.client_email,
            "scope": SCOPES,
            "aud": self.account.token_uri,
            "iat": now.as_secs(),
            "exp": (now + ASSERTION_LIFETIME).as_secs(),
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut signature)
            .map_err(|_| "signing the assertion failed".to_owned())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// Parses the PEM PKCS#8 RSA key of a key file.
fn parse_private_key(pem: &str) -> Result<RsaKeyPair, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|line| *line != "-----END PRIVATE KEY-----")
        .collect();
    if body.is_empty() {
        return Err("private_key is not a PEM \"PRIVATE KEY\" (PKCS#8)".to_owned());
    }
    let der = STANDARD.decode(body).map_err(|_| "private_key is not valid base64".to_owned())?;
    RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("private_key is not a usable RSA key ({e})"))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::routing::post;
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;
    use crate::store::firebase::config::FirebaseConfig;

    /// A stand-in for Google's token endpoint: it checks each assertion's
    /// RS256 signature against the test key and issues numbered tokens that
    /// live for `lifetime_s`.
    #[derive(Clone)]
    struct TokenEndpoint {
        public_key: Arc<Vec<u8>>,
        issued: Arc<AtomicU32>,
        lifetime_s: u64,
        claims: Arc<Mutex<Vec<serde_json::Value>>>,
    }

    async fn issue(
        State(endpoint): State<TokenEndpoint>,
        body: String,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;

        let assertion = body.split_once("&assertion=").map(|(_, jwt)| jwt).unwrap_or_default();
        let parts: Vec<&str> = assertion.split('.').collect();
        let valid = parts.len() == 3
            && body.starts_with("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
            && UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, endpoint.public_key.as_slice())
                .verify(
                    format!("{}.{}", parts[0], parts[1]).as_bytes(),
                    &URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default(),
                )
                .is_ok();
        if !valid {
            let error =
                serde_json::json!({"error": "invalid_grant", "error_description": "bad signature"});
            return (axum::http::StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
        }
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        assert_eq!(decode(parts[0])["alg"], "RS256");
        endpoint.claims.lock().unwrap().push(decode(parts[1]));
        let n = endpoint.issued.fetch_add(1, Ordering::SeqCst) + 1;
        axum::Json(serde_json::json!({
            "access_token": format!("token-{n}"),
            "expires_in": endpoint.lifetime_s,
            "token_type": "Bearer",
        }))
        .into_response()
    }

    /// Generates a fresh 2048-bit RSA key with the openssl command line;
    /// returns the PKCS#8 PEM and the DER public key.
    fn test_key() -> (String, Vec<u8>) {
        let output = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .expect("the token tests need the openssl command to make a test key");
        assert!(output.status.success(), "openssl genpkey failed");
        let pem = String::from_utf8(output.stdout).unwrap();
        let public = parse_private_key(&pem).unwrap().public().as_ref().to_vec();
        (pem, public)
    }

    async fn serve(endpoint: TokenEndpoint) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/token", post(issue)).with_state(endpoint);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}/token")
    }

    fn key_file(dir: &Path, pem: &str, token_uri: &str) -> PathBuf {
        let path = dir.join("key.json");
        let key = serde_json::json!({
            "type": "service_account",
            "project_id": "facegate-test",
            "private_key_id": "test-key",
            "private_key": pem,
            "client_email": "facegate@facegate-test.iam.gserviceaccount.com",
            "token_uri": token_uri,
        });
        std::fs::write(&path, key.to_string()).unwrap();
        path
    }

    #[tokio::test]
    async fn tokens_are_cached_and_refreshed_before_they_expire() {
        let (pem, public_key) = test_key();
        let endpoint = TokenEndpoint {
            public_key: Arc::new(public_key),
            issued: Arc::new(AtomicU32::new(0)),
            lifetime_s: 2,
            claims: Arc::default(),
        };
        let token_uri = serve(endpoint.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), &pem, &token_uri);
        let http = Http::new(&FirebaseConfig::new("p", "b")).unwrap();
        let source = TokenSource::from_file(&path, http).unwrap();

        assert_eq!(source.access_token().await.unwrap(), "token-1");
        assert_eq!(source.access_token().await.unwrap(), "token-1");
        assert_eq!(endpoint.issued.load(Ordering::SeqCst), 1);
        // A 2 s token is refreshed after half its life.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(source.access_token().await.unwrap(), "token-2");

        let claims = endpoint.claims.lock().unwrap()[0].clone();
        assert_eq!(claims["iss"], "facegate@facegate-test.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], token_uri.as_str());
        assert_eq!(claims["scope"], SCOPES);
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);
    }

    #[tokio::test]
    async fn a_rejected_key_names_the_account_and_the_token_endpoint() {
        let (pem, _) = test_key();
        let (_, other_public_key) = test_key();
        let endpoint = TokenEndpoint {
            public_key: Arc::new(other_public_key),
            issued: Arc::new(AtomicU32::new(0)),
            lifetime_s: 3600,
            claims: Arc::default(),
        };
        let token_uri = serve(endpoint).await;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), &pem, &token_uri);
        let source =
            TokenSource::from_file(&path, Http::new(&FirebaseConfig::new("p", "b")).unwrap())
                .unwrap();

        let error = source.access_token().await.unwrap_err().to_string();
        assert!(error.contains("facegate@facegate-test.iam.gserviceaccount.com"), "{error}");
        assert!(error.contains(&token_uri), "{error}");
        assert!(!error.contains("PRIVATE KEY"), "{error}");
    }

    #[test]
    fn a_broken_key_file_is_named_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(
            dir.path(),
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----",
            "http://x",
        );
        let Err(error) =
            TokenSource::from_file(&path, Http::new(&FirebaseConfig::new("p", "b")).unwrap())
        else {
            panic!("a broken key was accepted");
        };
        let error = error.to_string();
        assert!(error.contains("key.json") && error.contains("base64"), "{error}");
    }
}
