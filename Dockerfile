# syntax=docker/dockerfile:1
# portcullis container image: a release build on the pinned Rust toolchain, copied into a
# distroless runtime (glibc, libgcc, CA certificates, no shell) that runs as uid 65532.
#
#   docker build -t portcullis:0.1.0 .
#
# The build step is scripts/build-release.sh, the same script the chart checks run
# (tests/chart/test_dockerfile.py), so what CI checks is what the image gets.
# No secret is baked in: configuration and secrets come from the mounted config file and the
# PORTCULLIS_* environment at run time (see helm/portcullis).

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
# Cargo features: "otlp" lets tracing.otlp_endpoint export spans (off until it is set);
# --build-arg FEATURES= builds without.
ARG FEATURES=otlp
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and build tree between builds; the script copies the
# binary out of the (unpersisted) target directory into /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    CARGO_TARGET_DIR=/src/target FEATURES="${FEATURES}" scripts/build-release.sh /out

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="OIDC login proxy for Envoy ext_authz (Istio CUSTOM provider)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=builder --chown=0:0 --chmod=0755 /out/portcullis /usr/local/bin/portcullis
# distroless "nonroot": uid/gid 65532, matching the chart's securityContext.
USER 65532:65532
# 4180 HTTP ext_authz + login routes, 4181 gRPC ext_authz, 4182 admin (/healthz /readyz /metrics).
EXPOSE 4180 4181 4182
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config", "/etc/portcullis/portcullis.toml"]
