#!/usr/bin/env bash
# Runs the Argo CD health checks in deploy/argocd/resource_customizations/*/*/health.lua over their
# fixtures (health_test.yaml, Argo CD's own test format) with a real Lua interpreter, and checks that
# deploy/argocd/argocd-cm.yaml embeds exactly those scripts.
#
#   scripts/argocd-health-test.sh            # test
#   scripts/argocd-health-test.sh --update   # regenerate deploy/argocd/argocd-cm.yaml from the .lua files
#
# Argo CD evaluates health scripts with gopher-lua (Lua 5.1). The scripts are run with every
# interpreter found among lua5.1, luajit and lua5.4 (Debian packages; lua5.1 is installed with apt if
# none is present). This checks the logic and Lua 5.1 compatibility, not gopher-lua itself (Go, not
# installable here). YAML fixtures are converted with PyYAML ($TOOLS_DIR/venv from
# scripts/chart-check.sh, or a system python3 that has it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
ARGO="$ROOT/deploy/argocd"
MODE="test"
if [ "${1:-}" = "--update" ]; then MODE="update"; fi

PY=""
for candidate in "$TOOLS_DIR/venv/bin/python" python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' >/dev/null 2>&1; then PY="$candidate"; break; fi
done
if [ -z "$PY" ]; then
  echo "PyYAML not found: run scripts/chart-check.sh once (creates $TOOLS_DIR/venv) or pip install PyYAML" >&2
  exit 1
fi

find_luas() {
  LUAS=()
  local l
  for l in lua5.1 luajit lua5.4; do
    if command -v "$l" >/dev/null 2>&1; then LUAS+=("$l"); fi
  done
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Generates the argocd-cm snippet (update mode) or a Lua driver with every test case (test mode);
# exits non-zero (after writing the driver) if argocd-cm.yaml is stale or a fixture is unused.
status=0
"$PY" - "$ARGO" "$MODE" "$WORK/driver.lua" <<'PY' || status=1
import sys
from pathlib import Path

import yaml

argo, mode, driver = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
custom = argo / "resource_customizations"
checks = sorted(custom.glob("*/*/health.lua"))
if not checks:
    sys.exit(f"no health.lua under {custom}")

cm_path = argo / "argocd-cm.yaml"


def cm_key(lua: Path) -> str:
    return f"resource.customizations.health.{lua.parent.parent.name}_{lua.parent.name}"


def render_cm() -> str:
    out = [
        "# Generated from deploy/argocd/resource_customizations/*/*/health.lua by",
        "# `scripts/argocd-health-test.sh --update`; do not edit by hand (the test fails on drift).",
        "# Merge into the argocd-cm ConfigMap of your Argo CD installation (namespace argocd), e.g.",
        "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm.yaml",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "  labels:",
        "    app.kubernetes.io/name: argocd-cm",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
    ]
    for lua in checks:
        out.append(f"  {cm_key(lua)}: |")
        for line in lua.read_text(encoding="utf-8").rstrip("\n").split("\n"):
            out.append(f"    {line}" if line else "")
    return "\n".join(out) + "\n"


if mode == "update":
    cm_path.write_text(render_cm(), encoding="utf-8")
    print(f"wrote {cm_path}")
    sys.exit(0)

problems = []
if not cm_path.exists() or cm_path.read_text(encoding="utf-8") != render_cm():
    problems.append(f"{cm_path.name} does not embed the current health.lua files (run with --update)")
else:
    data = yaml.safe_load(cm_path.read_text(encoding="utf-8"))["data"]
    for lua in checks:
        if data.get(cm_key(lua), "").rstrip("\n") != lua.read_text(encoding="utf-8").rstrip("\n"):
            problems.append(f"{cm_path.name}: {cm_key(lua)} differs from {lua}")


def lua_str(s: str) -> str:
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '\\"':
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append("\\%d" % b)
    return '"' + "".join(out) + '"'


def lua_val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return lua_str(v)
    if isinstance(v, list):
        return "{" + ", ".join(lua_val(x) for x in v) + "}"
    if isinstance(v, dict):
        # JSON null / YAML ~ becomes an absent key, as in Argo CD.
        return "{" + ", ".join(f"[{lua_str(str(k))}] = {lua_val(x)}" for k, x in v.items() if x is not None) + "}"
    if v is None:
        return "nil"
    # Timestamps and other YAML types arrive as strings in Argo CD (the object is JSON).
    return lua_str(str(v))


cases = []
for lua in checks:
    tests = yaml.safe_load((lua.parent / "health_test.yaml").read_text(encoding="utf-8"))["tests"]
    for t in tests:
        fixture = lua.parent / t["inputPath"]
        obj = yaml.safe_load(fixture.read_text(encoding="utf-8"))
        want = t["healthStatus"]
        cases.append(
            "{script = %s, name = %s, status = %s, message = %s, obj = %s}"
            % (
                lua_str(str(lua)),
                lua_str(f"{lua.parent.parent.name}/{lua.parent.name} {t['inputPath']}"),
                lua_str(want["status"]),
                lua_str(want["message"]) if "message" in want else "nil",
                lua_val(obj),
            )
        )
    fixtures = {p.name for p in (lua.parent / "testdata").glob("*.yaml")}
    used = {Path(t["inputPath"]).name for t in tests}
    for unused in sorted(fixtures - used):
        problems.append(f"{lua.parent.name}/testdata/{unused} is not referenced by health_test.yaml")

driver.write_text(
    """
local cases = {
%s
}
local failed, passed = 0, 0
for _, c in ipairs(cases) do
  obj = c.obj
  local chunk, err = loadfile(c.script)
  local ok, hs
  if chunk == nil then
    ok, hs = false, err
  else
    ok, hs = pcall(chunk)
  end
  if not ok then
    failed = failed + 1
    print("  FAIL " .. c.name .. ": script error: " .. tostring(hs))
  elseif type(hs) ~= "table" or hs.status ~= c.status or (c.message ~= nil and hs.message ~= c.message) then
    failed = failed + 1
    local got = type(hs) == "table" and (tostring(hs.status) .. " / " .. tostring(hs.message)) or tostring(hs)
    print("  FAIL " .. c.name .. ": want " .. c.status .. " / " .. tostring(c.message) .. ", got " .. got)
  else
    passed = passed + 1
  end
end
print(string.format("  %%d passed, %%d failed", passed, failed))
if failed > 0 then os.exit(1) end
"""
    % ",\n".join(cases),
    encoding="utf-8",
)
for p in problems:
    print(f"  FAIL {p}")
sys.exit(1 if problems else 0)
PY
if [ "$MODE" = "update" ]; then exit "$status"; fi
if [ ! -s "$WORK/driver.lua" ]; then exit 1; fi

find_luas
if [ ${#LUAS[@]} -eq 0 ]; then
  echo "==> no Lua interpreter found; installing lua5.1 (Argo CD's gopher-lua implements Lua 5.1)"
  SUDO=""
  if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq lua5.1 >/dev/null; } || true
  find_luas
fi
if [ ${#LUAS[@]} -eq 0 ]; then
  echo "FAIL: no Lua interpreter available (apt-get install -y lua5.1 lua5.4)" >&2
  exit 1
fi

for lua in "${LUAS[@]}"; do
  echo "==> $lua ($("$lua" -v 2>&1 | head -n1))"
  (cd "$ARGO" && "$lua" "$WORK/driver.lua") || status=1
done
if [ "$status" = 0 ]; then echo "argocd health checks: all cases pass with ${LUAS[*]}"; fi
exit "$status"
