//! The server's side of the pages' [`Backend`]: the service and the admin
//! account, as the server functions reach them.

use std::sync::Arc;

use app::backend::{Backend, BackendError, BoxFuture, PhotoUpload};
use app::model::{
    ApiKeyInfo, CheckIn, CheckInResult, EnrolReport, FacePreview, LogFilter, Person, Settings,
};

use crate::api::ApiError;
use crate::auth::{AdminAuth, LoginError};
use crate::limit::RateLimiter;
use crate::service::{LogPolicy, Service, ServiceError, Upload};
use crate::store::{CheckInQuery, LogRetention};

/// The service and admin account behind the pages.
pub struct WebBackend {
    pub service: Arc<Service>,
    pub auth: Arc<AdminAuth>,
    /// Shared with the JSON API's check-in route.
    pub check_in_limit: Arc<RateLimiter>,
    pub keys: Arc<crate::keys::ApiKeys>,
    pub max_upload_bytes: usize,
    pub secure_cookies: bool,
}

fn backend_error(error: ServiceError) -> BackendError {
    let api = ApiError::from(error);
    BackendError {
        code: api.code().to_owned(),
        message: api.message().to_owned(),
        status: api.status().as_u16(),
        retry_after_s: api.retry_after_s(),
    }
}

fn key_info(key: crate::keys::ApiKey) -> ApiKeyInfo {
    ApiKeyInfo { id: key.id, name: key.name, prefix: key.prefix, created_ms: key.created_ms }
}

fn uploads(photos: Vec<PhotoUpload>) -> Vec<Upload> {
    photos.into_iter().map(|(label, bytes)| Upload { label, bytes }).collect()
}

impl Backend for WebBackend {
    fn check_in(
        &self,
        frame: Vec<u8>,
        log_unknown: bool,
        client: String,
    ) -> BoxFuture<'_, Result<CheckInResult, BackendError>> {
        Box::pin(async move {
            if let Err(wait_s) = self.check_in_limit.check(&client) {
                return Err(BackendError {
                    code: "rate_limited".to_owned(),
                    message: format!(
                        "too many check-ins from this device; try again in {wait_s} s"
                    ),
                    status: 429,
                    retry_after_s: Some(wait_s),
                });
            }
            let logging = if log_unknown { LogPolicy::Everything } else { LogPolicy::Recognised };
            self.service.check_in(frame, None, logging).await.map_err(backend_error)
        })
    }

    fn preview(&self, frame: Vec<u8>) -> BoxFuture<'_, Result<FacePreview, BackendError>> {
        Box::pin(async move { self.service.preview(frame).await.map_err(backend_error) })
    }

    fn enrol(
        &self,
        name: String,
        photos: Vec<PhotoUpload>,
        allow_lookalike: bool,
    ) -> BoxFuture<'_, Result<EnrolReport, BackendError>> {
        Box::pin(async move {
            match self.service.enrol(&name, uploads(photos), allow_lookalike).await {
                // Nothing enrolled is still an answer the page shows photo by photo.
                Err(ServiceError::NothingEnrolled(_, photos)) => {
                    Ok(EnrolReport { person: None, photos })
                }
                other => other.map_err(backend_error),
            }
        })
    }

    fn add_photos(
        &self,
        person_id: String,
        photos: Vec<PhotoUpload>,
        allow_lookalike: bool,
    ) -> BoxFuture<'_, Result<EnrolReport, BackendError>> {
        Box::pin(async move {
            match self.service.add_photos(&person_id, uploads(photos), allow_lookalike).await {
                Err(ServiceError::NothingEnrolled(_, photos)) => {
                    Ok(EnrolReport { person: None, photos })
                }
                other => other.map_err(backend_error),
            }
        })
    }

    fn people(&self) -> BoxFuture<'_, Result<Vec<Person>, BackendError>> {
        Box::pin(async move { self.service.people().await.map_err(backend_error) })
    }

    fn rename(
        &self,
        person_id: String,
        name: String,
    ) -> BoxFuture<'_, Result<Person, BackendError>> {
        Box::pin(async move { self.service.rename(&person_id, &name).await.map_err(backend_error) })
    }

    fn delete(&self, person_id: String) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move { self.service.delete(&person_id).await.map_err(backend_error) })
    }

    fn check_ins(&self, filter: LogFilter) -> BoxFuture<'_, Result<Vec<CheckIn>, BackendError>> {
        Box::pin(async move {
            let query = CheckInQuery {
                person_id: filter.person_id.filter(|id| !id.is_empty()),
                from_ms: filter.from_ms,
                to_ms: filter.to_ms,
                limit: Some(filter.limit.unwrap_or(200).min(5_000)),
            };
            self.service.check_ins(&query).await.map_err(backend_error)
        })
    }

    fn settings(&self) -> Settings {
        let config = self.service.config();
        Settings {
            detector: config.detector.to_string(),
            detectors: self.service.detectors().iter().map(ToString::to_string).collect(),
            threshold: config.policy.threshold,
            min_margin: config.policy.min_margin,
            min_face_px: config.min_face_px,
            store_backend: self.service.store_backend(),
            keep_thumbnails: config.keep_thumbnails,
            keep_names_in_log: config.log_retention == LogRetention::KeepNames,
            people: u32::try_from(self.service.gallery().people()).unwrap_or(u32::MAX),
            faces: u32::try_from(self.service.gallery().len()).unwrap_or(u32::MAX),
        }
    }

    fn api_keys(&self) -> Vec<ApiKeyInfo> {
        self.keys.list().into_iter().map(key_info).collect()
    }

    fn create_api_key(&self, name: String) -> Result<(ApiKeyInfo, String), BackendError> {
        let (record, secret) = self.keys.create(&name).map_err(|error| BackendError {
            code: "invalid_key".to_owned(),
            message: format!("{error:#}"),
            status: 400,
            retry_after_s: None,
        })?;
        Ok((key_info(record), secret))
    }

    fn revoke_api_key(&self, id: String) -> Result<(), BackendError> {
        match self.keys.revoke(&id) {
            Ok(true) => Ok(()),
            Ok(false) => Err(BackendError {
                code: "not_found".to_owned(),
                message: format!("no API key with id {id}"),
                status: 404,
                retry_after_s: None,
            }),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot revoke an API key");
                Err(BackendError {
                    code: "internal".to_owned(),
                    message: "internal error".to_owned(),
                    status: 500,
                    retry_after_s: None,
                })
            }
        }
    }

    fn max_upload_bytes(&self) -> usize {
        self.max_upload_bytes
    }

    fn login(
        &self,
        password: String,
        client: String,
    ) -> BoxFuture<'_, Result<String, BackendError>> {
        Box::pin(async move {
            let auth = self.auth.clone();
            let outcome = tokio::task::spawn_blocking(move || auth.login(&password, &client)).await;
            match outcome {
                Ok(Ok(token)) => Ok(token),
                Ok(Err(error @ LoginError::WrongPassword)) => Err(BackendError {
                    code: "wrong_password".to_owned(),
                    message: error.to_string(),
                    status: 401,
                    retry_after_s: None,
                }),
                Ok(Err(error @ LoginError::TooManyAttempts)) => Err(BackendError {
                    code: "too_many_attempts".to_owned(),
                    message: error.to_string(),
                    status: 429,
                    retry_after_s: Some(crate::auth::FAILURE_WINDOW.as_secs()),
                }),
                Err(error) => {
                    tracing::error!(%error, "login task failed");
                    Err(BackendError {
                        code: "internal".to_owned(),
                        message: "internal error".to_owned(),
                        status: 500,
                        retry_after_s: None,
                    })
                }
            }
        })
    }

    fn logout(&self, token: &str) {
        self.auth.logout(token);
    }

    fn is_admin_session(&self, token: &str) -> bool {
        self.auth.is_valid(token)
    }

    fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }
}
