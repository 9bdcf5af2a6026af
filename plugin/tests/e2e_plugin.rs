//! End to end: the built `kubectl-tenantdb` binary against the in-memory API server emulator, a
//! throwaway PostgreSQL and the real operator (`tenantdb_testkit::e2e::Env`), with the tests'
//! administrator kubeconfig. Every command once: `status` (snapshots with times, bytes and
//! latencies masked, `tests/expected/`), `migrations` (the bundled versions and checksums, read as
//! the tenant), `psql` (a real psql as the tenant; /proc is scanned while it runs: the password is
//! in no process's arguments or environment, the password file is 0600 and removed afterwards),
//! `rotate` (the operator rotates: status and Secret) and `report` (a directory and a .tar.gz with
//! the Tenants and no Secret value, current or previous).
//!
//! `TENANTDB_UPDATE_SNAPSHOTS=1` rewrites the expected files instead of comparing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use serde_json::json;
use tenantdb::crd::TenantMigration;
use tenantdb_testkit::e2e::{self, Env, wait_for};

const T: Duration = Duration::from_secs(60);
const NS: &str = "plug";

fn plugin_cmd(env: &Env, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tenantdb"));
    cmd.arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("PGPASSWORD")
        .kill_on_drop(true);
    cmd
}

async fn plugin(env: &Env, args: &[&str]) -> String {
    let out: Output = plugin_cmd(env, args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl-tenantdb {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The per-tenant statistics (`status.statistics`, written by operators that measure them) vary
/// from run to run: their lines are dropped and the connection counts masked, so the snapshots
/// hold with and without them (their exact rendering is unit-tested in `src/render/tests.rs`).
fn mask_statistics(s: &str) -> String {
    let conns = regex::Regex::new(r"^Connections\s.*\bof (\d+)\b.*$").unwrap();
    let mut out = Vec::new();
    let mut fleet_col = None;
    for line in s.lines() {
        if ["Transactions ", "Statements ", "Statistics "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            continue;
        }
        if let Some(c) = conns.captures(line) {
            out.push(format!("Connections     <n> of {}", &c[1]));
            continue;
        }
        // The fleet table: the CONNECTIONS column (`-/5`, `3/5`, `-`, `2`), located by the
        // header (columns are padded to a common width).
        if let (Some(a), Some(b)) = (line.find("CONNECTIONS"), line.find("HEALTH")) {
            fleet_col = Some((a, b));
        }
        match fleet_col {
            Some((a, b)) if line.len() > b && !line.contains("CONNECTIONS") => {
                let cell = line[a..b].trim();
                let masked = match cell.split_once('/') {
                    Some((_, limit)) => format!("<n>/{limit}"),
                    None => "<n>".to_string(),
                };
                out.push(format!(
                    "{}{masked:<w$}{}",
                    &line[..a],
                    &line[b..],
                    w = b - a
                ));
            }
            _ => out.push(line.to_string()),
        }
    }
    out.join("\n") + "\n"
}

#[test]
fn the_snapshots_hold_with_and_without_statistics() {
    let with = "Storage         x\n\
                Connections     [############--------]  60 %  3 of 5 (active 1, idle 2, idle in transaction 0)\n\
                Transactions    commitsPerMinute=1\n\
                Statements      available=false\n\
                Statistics      measured 3s ago\n\
                Health          healthy\n\
                \n\
                NAME   CONNECTIONS   HEALTH\n\
                crm    3/5           ok 10ms\n\
                web    2             ok 20ms\n";
    let without = "Storage         x\n\
                   Connections     - of 5 (no statistics yet)\n\
                   Health          healthy\n\
                   \n\
                   NAME   CONNECTIONS   HEALTH\n\
                   crm    -/5           ok 10ms\n\
                   web    -             ok 20ms\n";
    assert_eq!(mask_statistics(with), mask_statistics(without));
    assert!(mask_statistics(without).contains("crm    <n>/5         ok 10ms"));
}

/// Times, ages, byte counts and latencies vary from run to run; column padding with them.
fn mask(s: &str) -> String {
    let s = mask_statistics(s);
    let rules = [
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "<time>",
        ),
        (r"\d+[smhd] ago", "<ago>"),
        (r"\d+(\.\d+)? ?(B|KiB|MiB|GiB|TiB|PiB)\b", "<bytes>"),
        (r"\d+ ?ms\b", "<ms>"),
        (r" {2,}", "  "),
    ];
    let mut s = s;
    for (re, with) in rules {
        s = regex::Regex::new(re)
            .unwrap()
            .replace_all(&s, with)
            .into_owned();
    }
    s
}

fn expected_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(name)
}

fn assert_snapshot(name: &str, actual: &str) {
    let path = expected_path(name);
    if std::env::var("TENANTDB_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (TENANTDB_UPDATE_SNAPSHOTS=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        want,
        "output differs from {} (masked output above is `left`)",
        path.display()
    );
}

/// Waits until both health and usage of a Tenant are in status (the snapshot shows them).
async fn wait_measured(env: &Env, name: &str) {
    wait_for(
        T,
        &format!("{name}: health and usage in status"),
        || async {
            let t = env.tenants(NS).get(name).await.ok()?;
            let st = t.status?;
            (st.health.as_ref()?.healthy && st.usage.is_some()).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
}

/// Every readable `/proc/<pid>/cmdline` and `environ` containing `needle`, and the psql children of
/// `parent` seen (pid, PGPASSFILE).
fn scan_proc(needle: &str, parent: u32) -> (Vec<String>, Vec<(u32, Option<String>)>) {
    let mut leaks = Vec::new();
    let mut children = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return (leaks, children);
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let dir = e.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
        for (what, bytes) in [("cmdline", &cmdline), ("environ", &environ)] {
            if String::from_utf8_lossy(bytes).contains(needle) {
                leaks.push(format!("/proc/{pid}/{what}"));
            }
        }
        let ppid = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| {
                let after = s.rsplit_once(')')?.1.to_string();
                after.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(argv0).ends_with("psql") {
            let passfile = environ
                .split(|b| *b == 0)
                .filter_map(|kv| {
                    String::from_utf8_lossy(kv)
                        .strip_prefix("PGPASSFILE=")
                        .map(str::to_string)
                })
                .next();
            children.push((pid, passfile));
        }
    }
    (leaks, children)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The bundle has both Tenants' YAML, Secret names and key names, no managedFields and none of
/// `secrets` (nor their base64).
fn check_bundle(dir: &Path, secrets: &[String]) {
    for f in [
        "tenants/plug/ledger.yaml",
        "tenants/plug/crm.yaml",
        "tenants/plug/web.yaml",
        "summary.txt",
        "secrets.yaml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let crm = std::fs::read_to_string(dir.join("tenants/plug/crm.yaml")).unwrap();
    assert!(
        crm.contains("kind: Tenant") && crm.contains("isolation: database"),
        "{crm}"
    );
    let secrets_yaml = std::fs::read_to_string(dir.join("secrets.yaml")).unwrap();
    assert!(
        secrets_yaml.contains("crm-db")
            && secrets_yaml.contains("web-db")
            && secrets_yaml.contains("- password"),
        "{secrets_yaml}"
    );
    let mut files = Vec::new();
    files_under(dir, &mut files);
    use base64::Engine;
    for f in files {
        let content = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !content.contains("managedFields"),
            "{} has managedFields",
            f.display()
        );
        for s in secrets {
            let b64 = base64::engine::general_purpose::STANDARD.encode(s);
            assert!(
                !content.contains(s.as_str()) && !content.contains(&b64),
                "{} contains a Secret value",
                f.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_the_emulator_postgres_and_the_operator() {
    assert!(
        tenantdb_testkit::operator_bin().exists(),
        "{} missing: build the operator first (cargo build --bin tenantdb; `cargo test --workspace` does)",
        tenantdb_testkit::operator_bin().display()
    );
    let env = Env::start_with(&[
        "--resync-seconds",
        "1",
        "--health-interval-seconds",
        "1",
        "--usage-interval-seconds",
        "1",
    ])
    .await;
    env.create_tenant(
        NS,
        "crm",
        json!({"isolation": "database", "quotas": {"storage": "1Ti", "maxConnections": 5}}),
    )
    .await;
    env.create_tenant(NS, "web", json!({"isolation": "schema"}))
        .await;
    env.create_tenant(NS, "ledger", json!({"isolation": "shared"}))
        .await;
    for t in ["crm", "web", "ledger"] {
        env.wait_ready(NS, t, T).await;
        wait_measured(&env, t).await;
    }

    // status: one tenant, the namespace, all namespaces.
    assert_snapshot(
        "status_crm.txt",
        &mask(&plugin(&env, &["status", "crm", "-n", NS]).await),
    );
    assert_snapshot(
        "status_fleet.txt",
        &mask(&plugin(&env, &["status", "-A"]).await),
    );
    let ns_only = plugin(&env, &["status", "-n", NS]).await;
    assert!(
        ns_only.starts_with("NAME ") && ns_only.contains("3 tenants: 3 Ready"),
        "{ns_only}"
    );

    // migrations: the bundled versions with their checksums, read as the tenant's role.
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "crm-latest", "namespace": NS},
        "spec": {"target": {"tenant": "crm"}, "dryRun": true}
    }))
    .unwrap();
    Api::<TenantMigration>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &tm)
        .await
        .unwrap();
    let user = env.secret_value(NS, "crm-db", "username").await.unwrap();
    for t in ["crm", "web"] {
        // `--host` overrides the Secret's host (e.g. behind `kubectl port-forward`).
        let args = match t {
            "web" => vec!["migrations", t, "-n", NS, "--host", "localhost"],
            _ => vec!["migrations", t, "-n", NS],
        };
        let out = plugin(&env, &args).await;
        if t == "web" {
            assert!(
                out.contains("in database tenantdb_shared (read as"),
                "{out}"
            );
        }
        let secret_user = env
            .secret_value(NS, &format!("{t}-db"), "username")
            .await
            .unwrap();
        assert!(out.contains(&format!("(read as {secret_user})")), "{out}");
        let bundled = tenantdb::migrate::MigrationSet::bundled();
        assert!(!bundled.migrations().is_empty());
        for m in bundled.migrations() {
            let line = out
                .lines()
                .find(|l| l.starts_with(&m.version.to_string()))
                .unwrap_or_else(|| panic!("version {} missing:\n{out}", m.version));
            assert!(
                line.contains(&m.checksum),
                "checksum of {} missing: {line}",
                m.version
            );
        }
        assert!(!out.contains("not readable"), "{out}");
        assert_eq!(
            out.contains("crm-latest"),
            t == "crm",
            "the TenantMigration is listed for its target only:\n{out}"
        );
    }

    // A shared tenant's role cannot read the layout's history: said so, not an error, and
    // never read with other credentials.
    let out = plugin(&env, &["migrations", "ledger", "-n", NS]).await;
    let ledger_user = env.secret_value(NS, "ledger-db", "username").await.unwrap();
    assert!(out.contains(&format!("(read as {ledger_user})")), "{out}");
    assert!(
        out.contains("status.schemaVersion 2") && out.contains("not readable by the tenant's role"),
        "{out}"
    );

    // psql: a real psql as the tenant; the password is nowhere in /proc while it runs.
    let password = env.secret_value(NS, "crm-db", "password").await.unwrap();
    let mut child = plugin_cmd(
        &env,
        &[
            "psql",
            "crm",
            "-n",
            NS,
            "--",
            "-X",
            "-tA",
            "-c",
            "select current_user from pg_sleep(1)",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let plugin_pid = child.id().unwrap();
    let mut passfile: Option<PathBuf> = None;
    let mut mode_seen = false;
    let deadline = Instant::now() + T;
    let status = loop {
        let (leaks, psqls) = scan_proc(&password, plugin_pid);
        assert!(leaks.is_empty(), "the password is visible in {leaks:?}");
        for (pid, pf) in psqls {
            let pf = PathBuf::from(pf.unwrap_or_else(|| panic!("psql {pid} has no PGPASSFILE")));
            if let Ok(meta) = std::fs::metadata(&pf) {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", pf.display());
                mode_seen = true;
            }
            passfile = Some(pf);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "psql did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = child.wait_with_output().await.unwrap();
    assert!(
        status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user);
    let passfile =
        passfile.expect("the psql child was never seen in /proc (the scan checked nothing)");
    assert!(!passfile.exists(), "{} outlived psql", passfile.display());
    assert!(
        mode_seen,
        "the password file's mode was never read while psql ran"
    );

    // A terminated plugin ends psql and removes the password file too.
    let mut child = plugin_cmd(
        &env,
        &[
            "psql",
            "crm",
            "-n",
            NS,
            "--",
            "-X",
            "-tA",
            "-c",
            "select pg_sleep(60)",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let plugin_pid = child.id().unwrap();
    let (psql_pid, passfile) = wait_for(T, "the psql child", || async {
        let (_, psqls) = scan_proc("\u{0}unused\u{0}", plugin_pid);
        psqls.into_iter().next()
    })
    .await
    .unwrap();
    let passfile = PathBuf::from(passfile.expect("PGPASSFILE"));
    assert!(passfile.exists());
    let st = std::process::Command::new("kill")
        .args(["-TERM", &plugin_pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let st = tokio::time::timeout(T, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.code(), Some(143), "{st}");
    assert!(
        !passfile.exists(),
        "{} outlived a SIGTERM",
        passfile.display()
    );
    assert!(
        !Path::new(&format!("/proc/{psql_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{psql_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "psql {psql_pid} outlived the plugin"
    );

    // rotate: the annotation leads to a rotation reported in status and the Secret.
    let out = plugin(&env, &["rotate", "crm", "-n", NS]).await;
    let token = out
        .split("tenantdb.io/rotate=")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("no token in:\n{out}"))
        .to_string();
    assert!(out.contains(&format!("login role {user}_b")), "{out}");
    let creds = wait_for(T, "the rotation in status", || async {
        let c = env.tenants(NS).get("crm").await.ok()?.status?.credentials?;
        (c.rotation_token.as_deref() == Some(token.as_str())).then_some(c)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
    assert_eq!(creds.active_user, format!("{user}_b"));
    let new_user = wait_for(T, "the rotated Secret", || async {
        let u = env.secret_value(NS, "crm-db", "username").await?;
        (u != user).then_some(u)
    })
    .await
    .unwrap();
    assert_eq!(new_user, format!("{user}_b"));
    let after = plugin(&env, &["status", "crm", "-n", NS]).await;
    assert!(!after.contains("Last rotation   never"), "{after}");

    // report: a directory and a .tar.gz; no password (the current ones, and crm's previous one).
    let mut secrets = vec![password];
    for s in ["crm-db", "web-db", "ledger-db"] {
        secrets.push(env.secret_value(NS, s, "password").await.unwrap());
        secrets.push(env.secret_value(NS, s, "uri").await.unwrap());
    }
    let dir = env.dir.join("bundle");
    let out = plugin(&env, &["report", "-A", "-o", dir.to_str().unwrap()]).await;
    assert!(out.contains("Wrote the support bundle"), "{out}");
    check_bundle(&dir, &secrets);
    let tgz = env.dir.join("bundle.tar.gz");
    plugin(&env, &["report", "-n", NS, "-o", tgz.to_str().unwrap()]).await;
    let unpacked = env.dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    check_bundle(&unpacked.join("bundle"), &secrets);
}
