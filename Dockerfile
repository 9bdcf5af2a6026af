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
# plugin, the benchmark driver) are neither built nor linked into the image: Cargo only reads their
# manifests to load the workspace and check the lockfile, so they get their manifests and empty
# source files (a workspace skeleton).
COPY apiserver/Cargo.toml ./apiserver/Cargo.toml
COPY testkit/Cargo.toml ./testkit/Cargo.toml
COPY demo/Cargo.toml ./demo/Cargo.toml
COPY plugin/Cargo.toml ./plugin/Cargo.toml
COPY bench/driver/Cargo.toml ./bench/driver/Cargo.toml
RUN mkdir -p apiserver/src testkit/src demo/src plugin/src bench/driver/src && touch apiserver/src/lib.rs apiserver/src/main.rs testkit/src/lib.rs demo/src/main.rs plugin/src/main.rs bench/driver/src/main.rs
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tenantdb --bin tenantdb \
 && install -D -m 0755 target/release/tenantdb /out/tenantdb

# Debian 12 slim, not distroless: tenant moves run `pg_dump --schema-only | psql`
# (src/moves/copy.rs), and the PostgreSQL client with its libraries (libpq, OpenSSL, Kerberos,
# LDAP, readline, perl for pg_wrapper) is a tree of Debian packages, which a package manager keeps
# consistent and distroless has none of. It still has the glibc + libgcc the binary links (its own
# TLS is rustls, no OpenSSL), and no compiler or other build tool; unlike distroless it has a shell
# and apt/dpkg.
FROM debian:bookworm-slim
# The PostgreSQL client's major version. pg_dump refuses servers newer than itself and dumps older
# ones (back to 9.2), so it must be at least the newest server a tenant is moved from: 17, from the
# PostgreSQL project's apt repository (PGDG). Debian 12's own postgresql-client-15 would need no
# third-party repository (only Debian's archive and its security updates), but could not move
# tenants off 16 or 17 servers. The cost of 17: its dumps start with `SET transaction_timeout = 0;`, which servers older
# than 17 reject; the copy drops that line of the dump's header (src/moves/copy.rs, fit_header).
# Newer servers: --build-arg PG_MAJOR=18.
ARG PG_MAJOR=17
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tenantdb" \
      org.opencontainers.image.description="Kubernetes operator for the lifecycle of tenant databases (PostgreSQL, MongoDB)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# PGDG's signing key comes out of Debian's own postgresql-common package (apt.postgresql.org.asc,
# authenticated by the Debian archive signature like any package), so nothing is fetched unsigned
# and no curl/gpg is installed; the package itself is not installed (it is the server-side
# tooling). ca-certificates: apt needs it for https://apt.postgresql.org, libpq for
# sslmode=verify-full with sslrootcert=system. postgresql-client-${PG_MAJOR} pins the major
# version (minor updates come with a rebuild). One layer, apt lists and downloads removed.
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    cd /tmp; \
    apt-get download postgresql-common; \
    dpkg-deb -x postgresql-common_*.deb /tmp/postgresql-common; \
    install -D -m 0644 /tmp/postgresql-common/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc /usr/share/keyrings/apt.postgresql.org.asc; \
    rm -rf /tmp/postgresql-common /tmp/postgresql-common_*.deb; \
    printf '%s\n' 'Types: deb' 'URIs: https://apt.postgresql.org/pub/repos/apt' 'Suites: bookworm-pgdg' 'Components: main' 'Signed-By: /usr/share/keyrings/apt.postgresql.org.asc' > /etc/apt/sources.list.d/pgdg.sources; \
    apt-get update; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}"; \
    "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version; \
    "/usr/lib/postgresql/${PG_MAJOR}/bin/psql" --version; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 65532 nonroot; \
    useradd --uid 65532 --gid 65532 --no-log-init --no-create-home --home-dir /home/nonroot --shell /usr/sbin/nologin nonroot
# The versioned directory, not /usr/bin: /usr/bin/pg_dump and psql are pg_wrapper (perl) links that
# pick a version from the clusters on the machine; src/moves/copy.rs::tool() reads this instead of
# guessing. The user above is distroless's `nonroot` (same uid/gid), so the uid has a name as before.
ENV TENANTDB_PG_BIN_DIR=/usr/lib/postgresql/${PG_MAJOR}/bin
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
