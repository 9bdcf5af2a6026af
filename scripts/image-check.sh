#!/usr/bin/env bash
# What can be checked of the container image without a Docker engine (none is installable on the
# build machine). It does not build the image; it fails when the Dockerfile would:
#   1. every file the builder stage COPYs exists and is not excluded by .dockerignore;
#   2. the build context the builder stage sees (exactly those files, plus the workspace skeleton
#      its `RUN mkdir -p` line creates) compiles: `cargo check --locked -p tenantdb --bin tenantdb`
#      in a directory holding only them (catches a source, include_str!, build script input or
#      workspace member missing from the COPY list);
#   2b. the operator does not depend on the emulator, the test kit or the demo (normal and build
#      dependencies, `cargo tree`), so none of them can be linked into the image;
#   3. the builder image's Rust is at least the workspace's rust-version;
#   4. the runtime base is debian:bookworm-slim (and the OCI label base.name says so), and the
#      binary needs only what that base has: its NEEDED libraries are glibc's and libgcc_s, and no
#      glibc symbol version newer than bookworm's 2.36;
#   5. the runtime stage runs as a non-root numeric user and its ENTRYPOINT is the copied binary;
#   6. the runtime stage provides pg_dump and psql (tenant moves, src/moves/copy.rs): it installs
#      postgresql-client-<major> from a signed source (Debian for 15, apt.postgresql.org otherwise),
#      the major is at least the PostgreSQL the e2e test runs, TENANTDB_PG_BIN_DIR is that package's
#      /usr/lib/postgresql/<major>/bin, apt lists are removed in the same RUN, and nothing but the
#      client and ca-certificates is installed (no build tools).
# Usage: scripts/image-check.sh [path/to/tenantdb binary]   (default target/debug/tenantdb)
#        DOCKERFILE=path/to/copy scripts/image-check.sh …   checks another Dockerfile (to see a
#        check fail on a broken copy); the build context is still this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
bin="${1:-target/debug/tenantdb}"
dockerfile="${DOCKERFILE:-Dockerfile}"
fail() { echo "image-check: $*" >&2; exit 1; }

# The builder stage: from the first FROM up to the second.
builder="$(awk '/^FROM /{n++} n==1' "$dockerfile")"
runtime="$(awk '/^FROM /{n++} n==2' "$dockerfile")"
if [ -z "$builder" ] || [ -z "$runtime" ]; then fail "expected a two-stage Dockerfile"; fi

# 1. The COPY sources of the builder stage (continuation lines are not used for COPY here).
mapfile -t sources < <(printf '%s\n' "$builder" | awk '$1=="COPY" && $2 !~ /^--from/ {for (i=2;i<NF;i++) print $i}')
[ "${#sources[@]}" -gt 0 ] || fail "no COPY in the builder stage"
mapfile -t ignored < <(grep -v '^\s*#' .dockerignore | sed '/^\s*$/d')
for s in "${sources[@]}"; do
  [ -e "$s" ] || fail "Dockerfile copies $s, which does not exist"
  for pat in "${ignored[@]}"; do
    # shellcheck disable=SC2053  # glob match on purpose (.dockerignore patterns)
    if [[ "$s" == $pat ]]; then fail "Dockerfile copies $s, but .dockerignore excludes it ($pat)"; fi
  done
done
echo "image-check: builder stage copies ${sources[*]}"

# 2. Compile exactly that context. Its own target directory: cargo hashes workspace members by
#    their path relative to the workspace, so sharing target/ would let this copy's build-script
#    output (absolute paths into the temporary directory) replace the real one. A cold run checks
#    every dependency once (`cargo check`, a few minutes); later runs only the workspace crates.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
for s in "${sources[@]}"; do
  mkdir -p "$ctx/$(dirname "$s")"
  cp -r "$s" "$ctx/$s"
  # Files inside copied directories that .dockerignore excludes (e.g. **/target) never reach it.
  rm -rf "$ctx/$s/target"
done
# The workspace skeleton (empty sources of the members that are not built).
skeleton="$(printf '%s\n' "$builder" | sed -n 's/^RUN \(mkdir -p .*\)$/\1/p')"
[ -n "$skeleton" ] || fail "no 'RUN mkdir -p …' workspace skeleton line in the builder stage"
(cd "$ctx" && sh -c "$skeleton")
(cd "$ctx" && CARGO_TARGET_DIR="$root/target/image-check" cargo check --locked --quiet -p tenantdb --bin tenantdb) \
  || fail "the builder stage's context does not compile (a file it needs is not copied)"
echo "image-check: the builder context compiles"

# 2b. What the operator links: never the emulator, the test kit or the demo.
deps="$(cargo tree --locked -p tenantdb -e normal,build --prefix none --format '{p}' | awk '{print $1}' | sort -u)"
for forbidden in tenantdb-apiserver tenantdb-testkit tenantdb-demo tenantdb-bench kube-cel; do
  if grep -qx "$forbidden" <<<"$deps"; then
    fail "the operator depends on $forbidden (it must stay a dev-dependency)"
  fi
done
echo "image-check: the operator links none of tenantdb-apiserver, tenantdb-testkit, tenantdb-demo, tenantdb-bench, kube-cel"
# The kubectl plugin is shipped too (cargo install --path plugin): the same rule.
deps="$(cargo tree --locked -p kubectl-tenantdb -e normal,build --prefix none --format '{p}' | awk '{print $1}' | sort -u)"
for forbidden in tenantdb-apiserver tenantdb-testkit tenantdb-demo tenantdb-bench kube-cel; do
  if grep -qx "$forbidden" <<<"$deps"; then
    fail "the kubectl plugin depends on $forbidden (it must stay a dev-dependency)"
  fi
done
echo "image-check: the kubectl plugin links none of tenantdb-apiserver, tenantdb-testkit, tenantdb-demo, tenantdb-bench, kube-cel"

# 3. Builder Rust vs. rust-version.
image_rust="$(printf '%s\n' "$builder" | sed -n 's/^FROM rust:\([0-9.]*\).*/\1/p')"
need_rust="$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
if [ -z "$image_rust" ] || [ -z "$need_rust" ]; then
  fail "cannot read the builder's Rust version or rust-version"
fi
[ "$(printf '%s\n%s\n' "$need_rust" "$image_rust" | sort -V | head -1)" = "$need_rust" ] \
  || fail "builder image rust:$image_rust is older than rust-version $need_rust"
echo "image-check: builder rust:$image_rust >= rust-version $need_rust"

# 4. The runtime base, and the binary's shared libraries vs. what it provides: debian:bookworm-slim
#    has libc6 (glibc 2.36) and libgcc-s1 (both Priority: required); no OpenSSL (TLS is rustls).
#    NEEDED entries, not ldd: ldd shows what this machine would load, not what the binary asks for.
base="$(sed -n '1s/^FROM \([^ ]*\).*/\1/p' <<<"$runtime")"
[ "$base" = "debian:bookworm-slim" ] \
  || fail "the runtime base is $base; check 4's list of libraries is for debian:bookworm-slim (update it with the base)"
label_base="$(printf '%s\n' "$runtime" | sed -n 's/.*org\.opencontainers\.image\.base\.name="\([^"]*\)".*/\1/p')"
[ "${label_base#docker.io/library/}" = "$base" ] \
  || fail "LABEL org.opencontainers.image.base.name=\"$label_base\" is not the runtime base $base"
[ -x "$bin" ] || fail "no binary at $bin (build it first)"
command -v readelf >/dev/null || fail "readelf (binutils) is needed to read the binary's NEEDED libraries"
allowed='^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libutil\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$'
while read -r lib; do
  [[ "$lib" =~ $allowed ]] || fail "$bin needs $lib, which $base does not provide (only glibc and libgcc_s)"
done < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
glibc="$(readelf --version-info --wide "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1)"
if [ -n "$glibc" ] && [ "$(printf '%s\n%s\n' "$glibc" 2.36 | sort -V | tail -1)" != 2.36 ]; then
  fail "$bin needs glibc $glibc; $base has 2.36"
fi
echo "image-check: runtime base $base; $bin needs only glibc${glibc:+ (symbols up to $glibc)} and libgcc_s"

# 5. Runtime stage: numeric non-root user, the entrypoint is what was copied.
user="$(printf '%s\n' "$runtime" | sed -n 's/^USER \([0-9]*\):\?.*/\1/p' | tail -1)"
if [ -z "$user" ] || [ "$user" = 0 ]; then fail "the runtime stage must run as a numeric non-root USER"; fi
entry="$(printf '%s\n' "$runtime" | sed -n 's/^ENTRYPOINT \["\([^"]*\)".*/\1/p')"
grep -q "^COPY --from=builder .* $entry\$" <<<"$runtime" \
  || fail "ENTRYPOINT $entry is not a file the runtime stage copies from the builder"
echo "image-check: runtime runs as uid $user, entrypoint $entry"

# 6. pg_dump and psql for tenant moves. RUN lines with their continuations joined; ${PG_MAJOR} is
#    the stage's ARG default (what `docker build` uses without --build-arg).
joined="$(printf '%s\n' "$runtime" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')"
major="$(printf '%s\n' "$runtime" | sed -n 's/^ARG PG_MAJOR=\([0-9]*\)$/\1/p' | tail -1)"
subst() { if [ -n "$major" ]; then sed -e "s/\${PG_MAJOR}/$major/g" -e "s/\$PG_MAJOR\b/$major/g"; else cat; fi; }
runs="$(printf '%s\n' "$joined" | grep '^RUN ' | subst || true)"
# Every package an `apt-get install` names (options and quotes dropped).
mapfile -t pkgs < <(printf '%s\n' "$runs" | tr ';&|' '\n' \
  | awk '{for (i=1;i<NF;i++) if ($i=="apt-get" && $(i+1)=="install") {for (j=i+2;j<=NF;j++) if ($j !~ /^-/) print $j; break}}' \
  | tr -d '"'"'" | sort -u)
client=""
for p in "${pkgs[@]}"; do
  case "$p" in
    postgresql-client-[0-9]*) client="$p" ;;
    ca-certificates) ;;
    *) fail "the runtime stage installs $p: only postgresql-client-<major> and ca-certificates belong in it (no build tools; extend this list in scripts/image-check.sh if it is meant)" ;;
  esac
done
[ -n "$client" ] || fail "the runtime stage installs no postgresql-client-<major> package: no pg_dump/psql, tenant moves cannot run"
client_major="${client#postgresql-client-}"
[[ "$client_major" =~ ^[0-9]+$ ]] || fail "cannot read the PostgreSQL major of $client"
e2e_major="$(sed -n 's/^PG_IMAGE="postgres:\([0-9]*\).*/\1/p' tests/e2e/kind.sh)"
[ -n "$e2e_major" ] || fail "cannot read the PostgreSQL version of tests/e2e/kind.sh (PG_IMAGE)"
[ "$client_major" -ge "$e2e_major" ] \
  || fail "$client is older than the PostgreSQL $e2e_major servers the e2e test runs (pg_dump refuses newer servers)"
if [ "$client_major" != 15 ]; then
  # Not in Debian 12: the PGDG repository, with its key (no trusted=yes, no unauthenticated installs).
  grep -q 'apt\.postgresql\.org/pub/repos/apt' <<<"$runs" \
    || fail "$client is not in Debian 12: the runtime stage must add apt.postgresql.org"
  grep -q 'bookworm-pgdg' <<<"$runs" || fail "the PGDG source is not for bookworm (bookworm-pgdg)"
  grep -Eq '(Signed-By: |signed-by=)/[^ '"'"']*apt\.postgresql\.org\.(asc|gpg)' <<<"$runs" \
    || fail "the PGDG source has no Signed-By key"
fi
if grep -Eiq 'trusted=yes|trusted: *yes|--allow-unauthenticated|AllowInsecureRepositories|AllowUnauthenticated' <<<"$runs"; then
  fail "the runtime stage installs unauthenticated packages"
fi
# The RUN that installs must also remove the apt lists (a later RUN would leave them in a layer).
install_run="$(printf '%s\n' "$runs" | grep -F "$client")"
grep -q 'rm -rf /var/lib/apt/lists/\*' <<<"$install_run" \
  || fail "the RUN installing $client does not remove /var/lib/apt/lists/*"
bindir="$(printf '%s\n' "$joined" | sed -n 's/^ENV TENANTDB_PG_BIN_DIR=\([^ ]*\)$/\1/p' | subst | tail -1)"
[ "$bindir" = "/usr/lib/postgresql/$client_major/bin" ] \
  || fail "ENV TENANTDB_PG_BIN_DIR=${bindir:-(unset)}, not /usr/lib/postgresql/$client_major/bin where $client puts pg_dump and psql"
# Where this machine has the same package, its file list confirms the layout.
# (Lists read whole before grep: `producer | grep -q` can fail on SIGPIPE under pipefail.)
if files="$(dpkg -L "$client" 2>/dev/null)"; then
  for t in pg_dump psql; do
    grep -qx "$bindir/$t" <<<"$files" || fail "$client (as installed here) has no $bindir/$t"
  done
fi
echo "image-check: runtime installs $client (pg_dump, psql >= e2e PostgreSQL $e2e_major), TENANTDB_PG_BIN_DIR=$bindir"
