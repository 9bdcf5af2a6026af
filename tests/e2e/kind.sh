#!/usr/bin/env bash
# End-to-end test on a real (kind) cluster. Needs Docker, kind, kubectl and helm; it has NOT been run
# in the project's CI machine (no Docker engine there). See tests/e2e/README.md.
#
#   tests/e2e/kind.sh                 # create cluster, test, delete cluster
#   KEEP_CLUSTER=1 tests/e2e/kind.sh  # keep the cluster for poking around afterwards
#
# Steps: kind cluster -> docker build + kind load -> PostgreSQL 15 (tests/e2e/manifests) -> helm
# install charts/tenantdb -> apply examples/tenant-schema.yaml and examples/tenant-database.yaml ->
# wait for Ready -> check the Secrets and log in with them -> delete -> verify cleanup (Delete policy
# drops schema and role, Retain keeps the database, Secrets are garbage-collected).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-tenantdb-e2e}"
IMAGE_REPO="${IMAGE_REPO:-tenantdb}"
IMAGE_TAG="${IMAGE_TAG:-e2e}"
NS="${OPERATOR_NAMESPACE:-tenantdb-system}"
TENANT_NS="default"
TIMEOUT="${E2E_TIMEOUT:-180s}"
PG_IMAGE="postgres:15-bookworm"

log() { echo "==> $*"; }
die() { echo "FAIL: $*" >&2; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (see tests/e2e/README.md)"
done

created=0
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    echo "--- diagnostics (exit $rc) ---" >&2
    kubectl -n "$NS" get pods -o wide >&2 || true
    kubectl -n "$NS" logs deployment/tenantdb --tail=100 >&2 || true
    kubectl -n "$TENANT_NS" get tenants -o yaml >&2 || true
    kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -30 >&2 || true
  fi
  if [ "$created" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    log "deleting kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" || true
  fi
  exit "$rc"
}
trap cleanup EXIT

# kubectl against the test cluster only, whatever the user's current context is.
kubectl() { command kubectl --context "kind-$CLUSTER" "$@"; }
helm() { command helm --kube-context "kind-$CLUSTER" "$@"; }

# psql as a one-off pod in the db namespace; $1 = connection URI, rest = psql arguments.
psql_pod() {
  local uri="$1"; shift
  # shellcheck disable=SC2016 # $URI and $@ expand inside the pod, not here.
  kubectl -n db run "psql-$RANDOM" --rm -i --restart=Never --quiet --image="$PG_IMAGE" \
    --env="URI=$uri" --command -- sh -c 'exec psql "$URI" -v ON_ERROR_STOP=1 -Atq "$@"' psql "$@"
}
secret_key() { kubectl -n "$TENANT_NS" get secret "$1" -o "jsonpath={.data.$2}" | base64 -d; }

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "reusing kind cluster $CLUSTER"
else
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 120s
  created=1
fi

log "building image $IMAGE_REPO:$IMAGE_TAG"
docker build -t "$IMAGE_REPO:$IMAGE_TAG" "$ROOT"
kind load docker-image "$IMAGE_REPO:$IMAGE_TAG" --name "$CLUSTER"

log "installing PostgreSQL"
PG_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
kubectl create namespace db --dry-run=client -o yaml | kubectl apply -f -
kubectl -n db create secret generic postgres-admin --from-literal=password="$PG_PASSWORD" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f "$ROOT/tests/e2e/manifests/postgres.yaml"
kubectl -n db rollout status statefulset/postgres --timeout="$TIMEOUT"
ADMIN_URL="postgres://postgres:$PG_PASSWORD@postgres.db.svc.cluster.local:5432/postgres"

log "installing the chart"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" create secret generic tenantdb-postgres-admin --from-literal=url="$ADMIN_URL" \
  --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install tenantdb "$ROOT/charts/tenantdb" --namespace "$NS" --wait --timeout "$TIMEOUT" \
  --set image.repository="$IMAGE_REPO" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
  --set fullnameOverride=tenantdb
kubectl -n "$NS" rollout status deployment/tenantdb --timeout="$TIMEOUT"
kubectl get crd tenants.tenantdb.io >/dev/null

log "applying example Tenants"
kubectl apply -f "$ROOT/examples/tenant-schema.yaml" -f "$ROOT/examples/tenant-database.yaml"
kubectl -n "$TENANT_NS" wait --for=condition=Ready tenant/acme tenant/globex --timeout="$TIMEOUT"
kubectl -n "$TENANT_NS" get tenants -o wide

log "checking the credentials Secrets"
for t in acme globex; do
  secret="$(kubectl -n "$TENANT_NS" get tenant "$t" -o jsonpath='{.status.secretName}')"
  [ -n "$secret" ] || die "tenant $t has no status.secretName"
  for key in host port database schema username password uri; do
    [ -n "$(secret_key "$secret" "$key")" ] || die "Secret $secret has no $key"
  done
  who="$(psql_pod "$(secret_key "$secret" uri)" -c 'SELECT current_user')"
  [ "$who" = "$(secret_key "$secret" username)" ] || die "login with Secret $secret gave user '$who'"
  echo "  $t: Secret $secret ok, login as $who ok"
done
ACME_SCHEMA="$(kubectl -n "$TENANT_NS" get tenant acme -o jsonpath='{.status.schema}')"
ACME_ROLE="$(kubectl -n "$TENANT_NS" get tenant acme -o jsonpath='{.status.role}')"
ACME_DB="$(kubectl -n "$TENANT_NS" get tenant acme -o jsonpath='{.status.database}')"
GLOBEX_DB="$(kubectl -n "$TENANT_NS" get tenant globex -o jsonpath='{.status.database}')"

log "cross-tenant access is refused"
if psql_pod "$(secret_key acme-db uri | sed "s|/$ACME_DB\$|/$GLOBEX_DB|")" -c 'SELECT 1' >/dev/null 2>&1; then
  die "acme's role could connect to globex's database"
fi

log "deleting Tenants"
kubectl -n "$TENANT_NS" delete tenant acme globex --wait=true --timeout="$TIMEOUT"
kubectl -n "$TENANT_NS" wait --for=delete secret/acme-db --timeout=60s 2>/dev/null || true
if kubectl -n "$TENANT_NS" get secret acme-db >/dev/null 2>&1; then die "Secret acme-db was not garbage-collected"; fi
ADMIN_SHARED="${ADMIN_URL%/postgres}/$ACME_DB"
[ "$(psql_pod "$ADMIN_SHARED" -c "SELECT count(*) FROM pg_namespace WHERE nspname = '$ACME_SCHEMA'")" = 0 ] \
  || die "schema $ACME_SCHEMA still exists (deletionPolicy Delete)"
[ "$(psql_pod "$ADMIN_URL" -c "SELECT count(*) FROM pg_roles WHERE rolname = '$ACME_ROLE'")" = 0 ] \
  || die "role $ACME_ROLE still exists (deletionPolicy Delete)"
[ "$(psql_pod "$ADMIN_URL" -c "SELECT count(*) FROM pg_database WHERE datname = '$GLOBEX_DB'")" = 1 ] \
  || die "database $GLOBEX_DB is gone although deletionPolicy is Retain"
echo "  acme (Delete): schema and role dropped; globex (Retain): database kept"

log "PASS"
