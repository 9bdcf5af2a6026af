# syntax=docker/dockerfile:1.7
# tenantdb operator image.
#
#   docker build -t tenantdb:dev .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t tenantdb:0.1.0 .
#
# Needs BuildKit (default since Docker 23): the cargo registry and target directory are cache mounts,
# so rebuilds after a source change only recompile the workspace crates, not the dependencies.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what the build reads: manifests, lockfile, build script, the operator's sources, and
# migrations/ (the PostgreSQL baseline and the MongoDB collection models are compiled into the
# binary).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
# The other workspace members (the API server emulator, the test kit, the demo, the kubectl
# plugin) are neither built nor linked into the image: Cargo only reads their manifests to load the
# workspace and check the lockfile, so they get their manifests and empty source files (a
# workspace skeleton).
COPY apiserver/Cargo.toml ./apiserver/Cargo.toml
COPY testkit/Cargo.toml ./testkit/Cargo.toml
COPY demo/Cargo.toml ./demo/Cargo.toml
COPY plugin/Cargo.toml ./plugin/Cargo.toml
RUN mkdir -p apiserver/src testkit/src demo/src plugin/src && touch apiserver/src/lib.rs apiserver/src/main.rs testkit/src/lib.rs demo/src/main.rs plugin/src/main.rs
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tenantdb --bin tenantdb \
 && install -D -m 0755 target/release/tenantdb /out/tenantdb

# glibc + libgcc, CA certificates, no shell, no package manager. TLS is rustls (no OpenSSL).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tenantdb" \
      org.opencontainers.image.description="Kubernetes operator for the lifecycle of tenant databases (PostgreSQL, MongoDB)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=builder /out/tenantdb /tenantdb
# A copy of the migrations for reference and for TENANTDB_MIGRATIONS_DIR=/migrations/postgres. The
# operator does NOT read it by default: TENANTDB_MIGRATIONS_DIR is deliberately left unset, so the
# baseline compiled into the binary is used and image and binary can never disagree.
COPY migrations /migrations
USER 65532:65532
# /metrics, /healthz, /readyz (TENANTDB_HTTP_ADDR, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/tenantdb"]
CMD ["run"]
