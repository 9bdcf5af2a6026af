//! `tenantdb-apiserver`: run the in-memory Kubernetes API emulator (NOT a cluster).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

const USAGE: &str = "usage: tenantdb-apiserver [--listen ADDR] [--crds DIR]... [--manifests FILE]... [--kubeconfig PATH] [--namespace NS] [--watch-history N] [--watch-latency-ms MS] [--request-latency-ms MS]

In-memory Kubernetes API server emulator for tenantdb tests and the local demo.
NOT a cluster: no nodes, no pods, state is lost on exit. HTTPS with a throwaway CA, bearer-token
authentication and RBAC authorization like kube-apiserver; the kubeconfig is an administrator's.

  --listen ADDR        listen address (default 127.0.0.1:0 = free port)
  --crds DIR           load CustomResourceDefinitions from DIR/*.yaml (repeatable)
  --manifests FILE     create the objects of a multi-document YAML file at start, e.g. a chart's
                       rendered RBAC (`helm template … > FILE`); kinds not served are skipped
  --kubeconfig PATH    write a kubeconfig (context tenantdb-dev) pointing at the server
  --namespace NS       default namespace in the kubeconfig (default: default)
  --watch-history N    events kept for watch resumption (default 10000)
  --watch-latency-ms MS  delay every watch event by MS milliseconds (default 0; emulates informer lag)
  --request-latency-ms MS  delay every request by MS milliseconds before it is handled (default 0;
                       emulates an API server across a network, e.g. 2-5)";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("tenantdb-apiserver: {e}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = tenantdb_apiserver::Config::default();
    let mut kubeconfig: Option<PathBuf> = None;
    let mut namespace = "default".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--listen" => cfg.addr = val("--listen")?.parse::<SocketAddr>()?,
            "--crds" => cfg.load_crd_dir(&PathBuf::from(val("--crds")?))?,
            "--manifests" => {
                let p = PathBuf::from(val("--manifests")?);
                let text =
                    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                cfg.load_manifests(&text)?;
            }
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(val("--kubeconfig")?)),
            "--namespace" => namespace = val("--namespace")?,
            "--watch-history" => cfg.watch_history = val("--watch-history")?.parse()?,
            "--watch-latency-ms" => {
                cfg.watch_latency =
                    std::time::Duration::from_millis(val("--watch-latency-ms")?.parse()?)
            }
            "--request-latency-ms" => {
                cfg.request_latency =
                    std::time::Duration::from_millis(val("--request-latency-ms")?.parse()?)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = tenantdb_apiserver::start(cfg).await?;
        if let Some(p) = &kubeconfig {
            server.write_kubeconfig(p, &namespace)?;
            eprintln!("kubeconfig written to {}", p.display());
        }
        println!("{}", server.url());
        eprintln!(
            "tenantdb-apiserver (in-memory Kubernetes API emulator, NOT a cluster) listening on {}",
            server.url()
        );
        wait_for_signal().await;
        eprintln!("shutting down");
        server.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
