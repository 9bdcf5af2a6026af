use tenantdb_testkit::localpg::LocalPg;

#[test]
fn starts_and_stops() {
    let pg = LocalPg::start().expect("start");
    assert!(pg.wait_ready(std::time::Duration::from_secs(5)));
    let out = std::process::Command::new("psql")
        .arg(pg.admin_url())
        .args([
            "-Atc",
            "select current_setting('server_version_num')::int / 10000",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "15",
        "{:?}",
        out
    );
}
