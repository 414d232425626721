//! Infrastructure failures. A denial is never an `Error`: it is a `Decision`. Each variant maps
//! to exactly one HTTP status (and, for the gRPC adapter, one gRPC code) here and nowhere else,
//! so the gateway's fail-open / status-on-error setting governs what the client sees.

use http::StatusCode;

/// Something the proxy needed did not work. Rendered as 5xx, never as an allow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Discovery has not completed (the IdP was unreachable at start-up).
    #[error("identity provider not ready: {0}")]
    ProviderNotReady(String),
    /// The IdP failed while we talked to it (token exchange, userinfo): transport error, 5xx or
    /// an unreadable answer.
    #[error("identity provider failed: {0}")]
    Idp(String),
    /// The session store (Redis) failed or did not answer in time.
    #[error("session store unavailable: {0}")]
    Store(String),
    /// A bug or an impossible state; never caused by the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The one HTTP status for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::ProviderNotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Idp(_) => StatusCode::BAD_GATEWAY,
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short machine-readable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ProviderNotReady(_) => "provider_not_ready",
            Error::Idp(_) => "idp",
            Error::Store(_) => "store",
            Error::Internal(_) => "internal",
        }
    }

    /// The one gRPC code for this failure: UNAVAILABLE, so Envoy's `failure_mode_allow` /
    /// `status_on_error` applies exactly as for the HTTP adapter's 5xx.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::ProviderNotReady(_) | Error::Idp(_) | Error::Store(_) | Error::Internal(_) => {
                tonic::Code::Unavailable
            }
        }
    }

    /// A title for the error page; says nothing secret.
    pub fn title(&self) -> &'static str {
        match self {
            Error::ProviderNotReady(_) => "Sign-in is temporarily unavailable",
            Error::Idp(_) => "The identity provider did not answer as expected",
            Error::Store(_) => "Sessions are temporarily unavailable",
            Error::Internal(_) => "Something went wrong",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_a_5xx() {
        for e in [
            Error::ProviderNotReady("x".into()),
            Error::Idp("x".into()),
            Error::Store("x".into()),
            Error::Internal("x".into()),
        ] {
            assert!(e.status().is_server_error(), "{e} must be 5xx");
            assert_eq!(e.grpc_code(), tonic::Code::Unavailable, "{e}");
        }
    }
}
