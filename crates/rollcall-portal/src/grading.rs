//! Talking to the grading service — found through the SDK's providers, never
//! configured.
//!
//! Every call picks a provider round-robin, so two grading instances share the
//! load. When a call fails the provider is reported (the SDK skips it for a
//! few seconds) and the call goes to the next one:
//! - reads and idempotent writes (`GET`, `PUT`, `DELETE`) are retried after
//!   any connection failure, timeout or 5xx;
//! - a `POST` is retried only when it certainly was not stored: the connection
//!   was refused, or the answer was 502/503/504.
//!
//! With no provider at all the answer is [`GradingError::Unavailable`], which
//! the pages show as a 503 that refreshes itself. A 500 is an answer, not an
//! outage: the service is up and failed that request (the classic one
//! answers 500 for an unknown student).
//!
//! A write is checked for its effect, not taken at its word: the classic
//! grading service answers any method on `/students/{id}` with 200 and the
//! student as it was, and `POST /students` with the class list. A rename
//! whose answer does not carry the new name, a removal after which the
//! student is still there, an addition answered with something else than the
//! new student: each is "the grading service in use cannot …" (501), never a
//! success, nor a "may not have been stored" when it certainly was not.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rollcall_proto::ServiceName;
use rollcall_sdk::Service;
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use rollcall_grading_model::wire::{GradeBody, GradeView, StudentView};

/// Most bytes of one answer from the grading service.
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Timeout of one call to the grading service.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Most providers one request is tried on.
pub const MAX_ATTEMPTS: usize = 3;

/// What went wrong talking to the grading service.
#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    #[error("no grading service is available")]
    Unavailable,
    #[error("not found")]
    NotFound,
    /// The grading service refused the input; `field` names the culprit.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    #[error("the grading service answered unexpectedly: {0}")]
    Bad(String),
    /// A write whose outcome is unknown: the grading service did not answer
    /// in time after receiving it.
    #[error("the grading service did not answer; the change may or may not have been saved")]
    Uncertain,
    /// The grading service in use has no such route (a classic one cannot
    /// add, rename or remove students, nor correct grades).
    #[error("the grading service in use cannot {0}")]
    Unsupported(&'static str),
}

#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: String,
    #[serde(default)]
    field: Option<String>,
}

/// Figures about calls, for `/metrics`.
#[derive(Debug, Default)]
pub struct GradingMetrics {
    pub calls: rollcall_proto::prom::Counter,
    pub failovers: rollcall_proto::prom::Counter,
    pub unavailable: rollcall_proto::prom::Counter,
}

/// The grading service as the portal sees it.
#[derive(Debug, Clone)]
pub struct Grading {
    service: Service,
    name: ServiceName,
    metrics: std::sync::Arc<GradingMetrics>,
}

impl Grading {
    pub fn new(service: Service, name: ServiceName) -> Self {
        Self {
            service,
            name,
            metrics: std::sync::Arc::default(),
        }
    }

    pub fn metrics(&self) -> &GradingMetrics {
        &self.metrics
    }

    /// Sends one request with failover; returns the status and body of the
    /// first answer that is final.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>), GradingError> {
        self.metrics.calls.inc();
        let idempotent = method != Method::POST;
        let attempts = self
            .service
            .providers()
            .all(&self.name)
            .len()
            .clamp(1, MAX_ATTEMPTS);
        let mut last_error = GradingError::Unavailable;
        // A 500 from every provider tried: their answer, not an outage.
        let mut failed_answer = None;
        for attempt in 0..attempts {
            let Some(provider) = self.service.pick(&self.name) else {
                break;
            };
            if attempt > 0 {
                self.metrics.failovers.inc();
            }
            let mut request = self
                .service
                .client()
                .request(method.clone(), provider.join(path))
                .timeout(CALL_TIMEOUT);
            if let Some(body) = &body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retryable = matches!(
                        status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    ) || (idempotent && status.is_server_error());
                    if retryable && status == StatusCode::INTERNAL_SERVER_ERROR {
                        // Up, and it failed this request: try another
                        // without taking this one out of rotation.
                        let bytes = rollcall_sdk::bounded::read(response, MAX_ANSWER)
                            .await
                            .unwrap_or_default();
                        failed_answer = Some((status, bytes));
                        continue;
                    }
                    if retryable {
                        tracing::warn!(%provider, status = status.as_u16(), "grading service failed; trying another");
                        self.service.report_failure(&self.name, &provider);
                        last_error = GradingError::Unavailable;
                        continue;
                    }
                    // A student with every grade is well under this; an
                    // endless answer is an error, not a bigger buffer.
                    let bytes = rollcall_sdk::bounded::read(response, MAX_ANSWER)
                        .await
                        .map_err(|e| GradingError::Bad(e.to_string()))?;
                    return Ok((status, bytes));
                }
                Err(e) => {
                    tracing::warn!(%provider, error = %e, "grading service unreachable; trying another");
                    self.service.report_failure(&self.name, &provider);
                    if !idempotent && !e.is_connect() {
                        // It may have been stored: do not send it twice.
                        return Err(GradingError::Uncertain);
                    }
                    last_error = GradingError::Unavailable;
                }
            }
        }
        if let Some(answer) = failed_answer {
            return Ok(answer);
        }
        if matches!(last_error, GradingError::Unavailable) {
            self.metrics.unavailable.inc();
        }
        Err(last_error)
    }

    /// For a read of one student answered 500: whether the student exists at
    /// all (the classic service answers 500 for an unknown one).
    async fn unknown_student(&self, id: i64) -> bool {
        self.students()
            .await
            .is_ok_and(|all| all.iter().all(|s| s.id != id))
    }

    fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, GradingError> {
        if status == StatusCode::NOT_FOUND {
            return Err(GradingError::NotFound);
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(GradingError::Bad("HTTP 405".into()));
        }
        if status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE {
            let answer: Option<ErrorAnswer> = serde_json::from_slice(body).ok();
            return Err(match answer {
                Some(a) => GradingError::Invalid {
                    field: a.error.field,
                    message: a.error.message,
                },
                None => GradingError::Bad(format!("HTTP {}", status.as_u16())),
            });
        }
        if !status.is_success() {
            return Err(GradingError::Bad(format!("HTTP {}", status.as_u16())));
        }
        serde_json::from_slice(body).map_err(|e| GradingError::Bad(e.to_string()))
    }

    /// Like [`Grading::decode`] for a write `what` the grading service may
    /// not offer: a 405, or a 404 that is not one of rollcall's JSON errors
    /// (the route itself is missing), says it cannot.
    fn decode_write<T: DeserializeOwned>(
        status: StatusCode,
        body: &[u8],
        what: &'static str,
    ) -> Result<T, GradingError> {
        let ours = serde_json::from_slice::<ErrorAnswer>(body).is_ok();
        if status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND && !ours)
            || status == StatusCode::NOT_IMPLEMENTED
        {
            return Err(GradingError::Unsupported(what));
        }
        Self::decode(status, body)
    }

    pub async fn students(&self) -> Result<Vec<StudentView>, GradingError> {
        let (status, body) = self.call(Method::GET, "/students", None).await?;
        Self::decode(status, &body)
    }

    pub async fn student(&self, id: i64) -> Result<StudentView, GradingError> {
        let (status, body) = self
            .call(Method::GET, &format!("/students/{id}"), None)
            .await?;
        if status == StatusCode::INTERNAL_SERVER_ERROR && self.unknown_student(id).await {
            return Err(GradingError::NotFound);
        }
        Self::decode(status, &body)
    }

    /// One page of a student's grades, newest first (a classic grading
    /// service ignores the query and sends every grade, oldest first).
    pub async fn student_page(
        &self,
        id: i64,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<StudentView, GradingError> {
        let mut path = format!("/students/{id}?limit={limit}");
        if let Some(cursor) = cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = self.call(Method::GET, &path, None).await?;
        if status == StatusCode::INTERNAL_SERVER_ERROR && self.unknown_student(id).await {
            return Err(GradingError::NotFound);
        }
        Self::decode(status, &body)
    }

    pub async fn add_grade(
        &self,
        student: i64,
        grade: &GradeBody,
    ) -> Result<GradeView, GradingError> {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/students/{student}/grades"),
                Some(json(grade)),
            )
            .await?;
        Self::decode(status, &body)
    }

    pub async fn update_grade(
        &self,
        student: i64,
        grade_id: i64,
        grade: &GradeBody,
    ) -> Result<GradeView, GradingError> {
        let (status, body) = self
            .call(
                Method::PUT,
                &format!("/students/{student}/grades/{grade_id}"),
                Some(json(grade)),
            )
            .await?;
        Self::decode_write(status, &body, "correct grades")
    }

    pub async fn delete_grade(&self, student: i64, grade_id: i64) -> Result<(), GradingError> {
        let (status, body) = self
            .call(
                Method::DELETE,
                &format!("/students/{student}/grades/{grade_id}"),
                None,
            )
            .await?;
        if status == StatusCode::NO_CONTENT || status.is_success() {
            return Ok(());
        }
        Self::decode_write::<serde_json::Value>(status, &body, "delete grades").map(|_| ())
    }

    pub async fn add_student(&self, first: &str, last: &str) -> Result<StudentView, GradingError> {
        let body = serde_json::json!({"FirstName": first, "LastName": last});
        let (status, bytes) = self.call(Method::POST, "/students", Some(body)).await?;
        // Answered with something else than one student (the classic
        // service sends the class list): nothing was added.
        if status.is_success()
            && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| !v.is_object())
        {
            return Err(GradingError::Unsupported("add students"));
        }
        Self::decode_write(status, &bytes, "add students")
    }

    pub async fn rename_student(
        &self,
        id: i64,
        first: &str,
        last: &str,
    ) -> Result<StudentView, GradingError> {
        let body = serde_json::json!({"FirstName": first, "LastName": last});
        let (status, bytes) = self
            .call(Method::PUT, &format!("/students/{id}"), Some(body))
            .await?;
        let student: StudentView = Self::decode_write(status, &bytes, "rename students")?;
        // The classic service answers the student as it was.
        if student.first_name != first || student.last_name != last {
            return Err(GradingError::Unsupported("rename students"));
        }
        Ok(student)
    }

    pub async fn delete_student(&self, id: i64) -> Result<(), GradingError> {
        let (status, body) = self
            .call(Method::DELETE, &format!("/students/{id}"), None)
            .await?;
        if !status.is_success() {
            return Self::decode_write::<serde_json::Value>(status, &body, "remove students")
                .map(|_| ());
        }
        // The classic service answers 200 and removes nothing.
        match self.student(id).await {
            Err(GradingError::NotFound) => Ok(()),
            Ok(_) => Err(GradingError::Unsupported("remove students")),
            Err(e) => Err(e),
        }
    }
}

fn json(grade: &GradeBody) -> serde_json::Value {
    serde_json::to_value(grade).unwrap_or_default()
}
