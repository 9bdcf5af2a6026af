//! A Prometheus server for tests/monitoring.rs: the Debian package's binary on a loopback port
//! with its own TSDB directory, and the few API calls the test needs (plain HTTP/1.0).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tenantdb_testkit::e2e::{tail, wait_for};

const T: Duration = Duration::from_secs(90);

/// A Prometheus server (the Debian package's binary) on a loopback port with its own TSDB
/// directory; killed when dropped.
pub struct Prometheus {
    addr: String,
    dir: PathBuf,
    child: tokio::process::Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Stop it before its directory goes (kill_on_drop would only kill after this).
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Scrapes `target` (job "tenantdb", as the alerts' job selector expects) every second and
    /// evaluates `rules` every second.
    pub async fn start(target: &str, rules: &str) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let dir =
            std::env::temp_dir().join(format!("tenantdb-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("alerts.yaml"), rules).unwrap();
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [dir.join("alerts.yaml")],
            "scrape_configs": [{"job_name": "tenantdb", "static_configs": [{"targets": [target]}]}],
        });
        std::fs::write(dir.join("prometheus.yml"), config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let bin = std::env::var_os("PROMETHEUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("prometheus"));
        let child = tokio::process::Command::new(&bin)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e}\napt-get install --no-install-recommends prometheus (scripts/setup.sh)",
                    bin.display()
                )
            });
        let p = Prometheus { addr, dir, child };
        wait_for(T, "Prometheus /-/ready", || async {
            (tenantdb_testkit::http::http10_get_body(&p.addr, "/-/ready")
                .await
                .0
                == 200)
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
        p
    }

    pub fn log(&self) -> String {
        tail(
            &std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default(),
            30,
        )
    }

    /// Its log tail and its scrape targets (health, last error), for failure messages.
    pub async fn diagnose(&self) -> String {
        let targets = self.api("/api/v1/targets").await.unwrap_or_default();
        format!(
            "--- prometheus log ---\n{}\n--- targets ---\n{targets:#}",
            self.log()
        )
    }

    /// `data` of a successful API answer.
    async fn api(&self, path: &str) -> Option<Value> {
        let (code, body) = tenantdb_testkit::http::http10_get_body(&self.addr, path).await;
        let v: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["status"] == "success").then(|| v["data"].clone())
    }

    /// The active (pending or firing) alerts.
    pub async fn alerts(&self) -> Option<Vec<Value>> {
        self.api("/api/v1/alerts").await?["alerts"]
            .as_array()
            .cloned()
    }

    /// The instant query's result vector.
    pub async fn query(&self, q: &str) -> Option<Vec<Value>> {
        let enc: String = q
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.api(&format!("/api/v1/query?query={enc}")).await?["result"]
            .as_array()
            .cloned()
    }

    /// The newest `lastEvaluation` of the rule group `name`.
    pub async fn last_evaluation(&self, name: &str) -> Option<jiff::Timestamp> {
        let data = self.api("/api/v1/rules").await?;
        let group = data["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == name)?;
        group["lastEvaluation"].as_str()?.parse().ok()
    }
}
