//! A real PostgreSQL for the tests of the center's shared store, and the one policy for
//! tests that need it (as [`crate::data`] has for the data set).
//!
//! `.ci/run` starts a server and exports [`URL_VAR`] (a database URL whose user may
//! `CREATE DATABASE`), [`RESTART_VAR`] (a shell command that restarts that server at once,
//! as a crash would) and [`REQUIRE_VAR`]`=1`, under which a missing variable fails the test
//! instead of skipping it. Each test gets a database of its own ([`fresh_database`]), so
//! tests run in parallel.

/// The base database URL.
pub const URL_VAR: &str = "EDGEROUTE_TEST_POSTGRES_URL";
/// A shell command restarting the server immediately (`pg_ctl restart -m immediate`).
pub const RESTART_VAR: &str = "EDGEROUTE_TEST_POSTGRES_RESTART";
/// Turns a missing variable from a skip into a failure.
pub const REQUIRE_VAR: &str = "EDGEROUTE_REQUIRE_POSTGRES";

fn required() -> bool {
    std::env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1")
}

/// The value of `var`, or a notice and `None` (a panic under [`REQUIRE_VAR`]`=1`).
pub fn env_or_skip(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if required() => panic!(
            "{var} is not set, and {REQUIRE_VAR}=1 forbids skipping: start a PostgreSQL \
             server (see .ci/run) or unset {REQUIRE_VAR}"
        ),
        _ => {
            eprintln!(
                "NOTICE: {var} is not set; PostgreSQL test skipped (set {REQUIRE_VAR}=1 to fail instead)"
            );
            None
        }
    }
}

/// `url` with its database name replaced by `db` (query parameters kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Create an empty database named after `test` plus a random suffix on the server of
/// `base_url`; its URL.
pub async fn fresh_database(base_url: &str, test: &str) -> anyhow::Result<String> {
    let (client, connection) = tokio_postgres::connect(base_url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let name = format!(
        "edgeroute_{}_{:08x}",
        test.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>(),
        rand::random::<u32>()
    );
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    drop(client);
    let _ = task.await;
    Ok(with_database(base_url, &name))
}

/// Run the restart command of [`RESTART_VAR`].
pub async fn restart_server(command: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

/// A center replica in this process: `serve`'s router on a loopback port, on the
/// PostgreSQL store at a URL (several replicas may share one database).
pub struct Replica {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its store, to check what it holds.
    pub store: edgeroute_control_plane::sync::postgres::PgCenterStore,
    /// Its in-memory fleet view.
    pub fleet: std::sync::Arc<edgeroute_control_plane::fleet::view::FleetView>,
    /// Its whole state (to drive its rollout ticks by hand).
    pub center: edgeroute_control_plane::serve::Center,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), edgeroute_server::Error>>,
    _dir: tempfile::TempDir,
}

/// The agent token of test replicas.
pub const TOKEN: &str = "tok";
/// The admin key of test replicas.
pub const ADMIN: &str = "adm";

impl Replica {
    /// Start a replica on the database at `url`.
    pub async fn start(url: &str) -> anyhow::Result<Replica> {
        Self::start_with(url, edgeroute_control_plane::serve::Settings::default()).await
    }

    /// Start a replica on the database at `url` with these settings.
    pub async fn start_with(
        url: &str,
        settings: edgeroute_control_plane::serve::Settings,
    ) -> anyhow::Result<Replica> {
        use edgeroute_control_plane::{
            serve::{Center, app, auth::CenterAuth},
            sync::postgres::connect::PoolOptions,
        };
        let dir = tempfile::tempdir()?;
        let options = PoolOptions {
            timeout: std::time::Duration::from_secs(2),
            ..PoolOptions::default()
        };
        let (center, store) = Center::open_postgres(
            url,
            &options,
            dir.path(),
            CenterAuth::new(&[TOKEN.into()], Some(ADMIN), false),
            settings,
        )
        .await?;
        let fleet = center.fleet.clone();
        let state = center.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(edgeroute_server::serve_with_grace(
            listener,
            app(center),
            async {
                let _ = stopped.await;
            },
            std::time::Duration::from_secs(1),
        ));
        Ok(Replica {
            addr,
            store,
            fleet,
            center: state,
            stop: Some(stop),
            task,
            _dir: dir,
        })
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving and wait for it; the server's own error, if it failed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        Ok((&mut self.task).await??)
    }

    /// Whether the server task is still running (it did not crash).
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
        assert_eq!(
            with_database("postgresql://u@h:5/x", "t2"),
            "postgresql://u@h:5/t2"
        );
    }
}
