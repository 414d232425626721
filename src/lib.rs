//! portcullis: an OIDC login proxy that gateways ask about every request (Envoy ext_authz over
//! HTTP and gRPC, and more adapters to come). See the README for the architecture.

#![forbid(unsafe_code)]

pub mod app;
pub mod authz;
pub mod cli;
pub mod clock;
pub mod compat;
pub mod config;
pub mod dev_idp;
pub mod error;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod login;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod redirect;
pub mod session;
pub mod telemetry;
pub mod theme;
pub mod token;
