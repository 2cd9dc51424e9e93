//! The one error type of the service and the HTTP layer above it. Each variant names its
//! status; `http::error` turns it into the JSON answer.

use http::StatusCode;

/// Declares [`ErrorCode`] from one list, so its serde names, `as_str` and `ALL` cannot
/// drift apart.
macro_rules! error_codes {
    ($($variant:ident = $name:literal,)*) => {
        /// The `code` of an error answer. docs/api.md and the OpenAPI document list them
        /// all (`tests/it/error_codes.rs` checks it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order of docs/api.md's table.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    BadRequest = "bad_request",
    Unauthorized = "unauthorized",
    ApproverCannotRequest = "approver_cannot_request",
    PipelineCannotVote = "pipeline_cannot_vote",
    ApproverCannotConsume = "approver_cannot_consume",
    RequesterCannotVote = "requester_cannot_vote",
    NotEligible = "not_eligible",
    NotYours = "not_yours",
    OtherRun = "other_run",
    ApproversOnly = "approvers_only",
    AdminOnly = "admin_only",
    NotDelegated = "not_delegated",
    OidcNotAllowed = "oidc_not_allowed",
    OutOfScope = "out_of_scope",
    NotBreakGlass = "not_break_glass",
    AuditorCannotVote = "auditor_cannot_vote",
    RoleRequired = "role_required",
    SignInAgain = "sign_in_again",
    NotFound = "not_found",
    MethodNotAllowed = "method_not_allowed",
    IdempotencyMismatch = "idempotency_mismatch",
    AlreadyVoted = "already_voted",
    AlreadyRevoked = "already_revoked",
    NotPending = "not_pending",
    Expired = "expired",
    OutsideWindow = "outside_window",
    StageNotOpen = "stage_not_open",
    NotAChange = "not_a_change",
    Tampered = "tampered",
    NoRecordYet = "no_record_yet",
    ReplayedDelivery = "replayed_delivery",
    PayloadTooLarge = "payload_too_large",
    InvalidBody = "invalid_body",
    InvalidField = "invalid_field",
    InvalidRelease = "invalid_release",
    InvalidDelegation = "invalid_delegation",
    InvalidConfig = "invalid_config",
    BadCosignature = "bad_cosignature",
    InvalidTimeout = "invalid_timeout",
    NoMatchingRule = "no_matching_rule",
    MissingField = "missing_field",
    BreakGlassNotAllowed = "break_glass_not_allowed",
    BreakGlassIncomplete = "break_glass_incomplete",
    RequesterUnknown = "requester_unknown",
    ReasonRequired = "reason_required",
    ReasonTooLong = "reason_too_long",
    TooManyRequests = "too_many_requests",
    Internal = "internal",
    Unavailable = "unavailable",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request cannot be understood.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or one we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a known caller not allowed to do this.
    #[error("{1}")]
    Forbidden(ErrorCode, String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the request is not in a state that allows this.
    #[error("{1}")]
    Conflict(ErrorCode, String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 422: well-formed but invalid.
    #[error("{1}")]
    Invalid(ErrorCode, String),
    /// 429: this client or caller has to slow down; `Retry-After: retry_after` seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// 503: the store is unreachable or overloaded; retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(..) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(..) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::BadRequest(_) => ErrorCode::BadRequest,
            AppError::Unauthorized(_) => ErrorCode::Unauthorized,
            AppError::Forbidden(c, _) | AppError::Conflict(c, _) | AppError::Invalid(c, _) => *c,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            AppError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            AppError::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            AppError::Unavailable(_) => ErrorCode::Unavailable,
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        match e.unavailable() {
            Some(why) => {
                tracing::warn!(error = %e, "store unavailable");
                AppError::Unavailable(why.into())
            }
            None => AppError::Internal(anyhow::Error::new(e)),
        }
    }
}

impl From<crate::auth::oidc::OidcError> for AppError {
    fn from(e: crate::auth::oidc::OidcError) -> Self {
        use crate::auth::oidc::OidcError;
        match e {
            OidcError::Refused(_) => AppError::Unauthorized(e.to_string()),
            OidcError::NotAllowed(m) => AppError::Forbidden(ErrorCode::OidcNotAllowed, m),
            OidcError::Unavailable(m) => AppError::Unavailable(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn serde_names_are_the_wire_codes() {
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(serde_json::from_value::<ErrorCode>(c.as_str().into()).unwrap(), *c);
        }
    }
}
