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
#   4. the binary links only what gcr.io/distroless/cc-debian12 provides (glibc, libgcc_s);
#   5. the runtime stage runs as a non-root numeric user and its ENTRYPOINT is the copied binary.
# Usage: scripts/image-check.sh [path/to/tenantdb binary]   (default target/debug/tenantdb)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
bin="${1:-target/debug/tenantdb}"
fail() { echo "image-check: $*" >&2; exit 1; }

# The builder stage: from the first FROM up to the second.
builder="$(awk '/^FROM /{n++} n==1' Dockerfile)"
runtime="$(awk '/^FROM /{n++} n==2' Dockerfile)"
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
for forbidden in tenantdb-apiserver tenantdb-testkit tenantdb-demo kube-cel; do
  if printf '%s\n' "$deps" | grep -qx "$forbidden"; then
    fail "the operator depends on $forbidden (it must stay a dev-dependency)"
  fi
done
echo "image-check: the operator links none of tenantdb-apiserver, tenantdb-testkit, tenantdb-demo, kube-cel"
# The kubectl plugin is shipped too (cargo install --path plugin): the same rule.
deps="$(cargo tree --locked -p kubectl-tenantdb -e normal,build --prefix none --format '{p}' | awk '{print $1}' | sort -u)"
for forbidden in tenantdb-apiserver tenantdb-testkit tenantdb-demo kube-cel; do
  if printf '%s\n' "$deps" | grep -qx "$forbidden"; then
    fail "the kubectl plugin depends on $forbidden (it must stay a dev-dependency)"
  fi
done
echo "image-check: the kubectl plugin links none of tenantdb-apiserver, tenantdb-testkit, tenantdb-demo, kube-cel"

# 3. Builder Rust vs. rust-version.
image_rust="$(printf '%s\n' "$builder" | sed -n 's/^FROM rust:\([0-9.]*\).*/\1/p')"
need_rust="$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
if [ -z "$image_rust" ] || [ -z "$need_rust" ]; then
  fail "cannot read the builder's Rust version or rust-version"
fi
[ "$(printf '%s\n%s\n' "$need_rust" "$image_rust" | sort -V | head -1)" = "$need_rust" ] \
  || fail "builder image rust:$image_rust is older than rust-version $need_rust"
echo "image-check: builder rust:$image_rust >= rust-version $need_rust"

# 4. Shared libraries of the binary vs. distroless/cc (glibc, libgcc_s; no OpenSSL: TLS is rustls).
[ -x "$bin" ] || fail "no binary at $bin (build it first)"
allowed='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|/lib64/ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$'
while read -r lib _; do
  [[ "$lib" =~ $allowed ]] || fail "$bin links $lib, which distroless/cc-debian12 does not provide"
done < <(ldd "$bin" | awk '{print $1}')
echo "image-check: $bin links only glibc and libgcc_s"

# 5. Runtime stage: numeric non-root user, the entrypoint is what was copied.
user="$(printf '%s\n' "$runtime" | sed -n 's/^USER \([0-9]*\):\?.*/\1/p' | tail -1)"
if [ -z "$user" ] || [ "$user" = 0 ]; then fail "the runtime stage must run as a numeric non-root USER"; fi
entry="$(printf '%s\n' "$runtime" | sed -n 's/^ENTRYPOINT \["\([^"]*\)".*/\1/p')"
printf '%s\n' "$runtime" | grep -q "^COPY --from=builder .* $entry\$" \
  || fail "ENTRYPOINT $entry is not a file the runtime stage copies from the builder"
echo "image-check: runtime runs as uid $user, entrypoint $entry"
