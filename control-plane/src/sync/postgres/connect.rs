//! The bounded connection pool: TLS with rustls (ring), never OpenSSL; migrations on start.

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use tokio_postgres::config::SslMode;

use super::{PgCenterStore, schema};

/// How the pool is sized and how long a request waits for the database.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most connections one replica opens.
    pub max_size: usize,
    /// Longest wait for a free connection or a new one: past it a request gets 503
    /// instead of hanging while the database is away.
    pub timeout: Duration,
    /// PEM CA bundle trusted for the database's certificate (else the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// Group commit of concurrent reports; `None`: a transaction per report.
    pub batch: Option<super::batch::BatchOptions>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 16,
            timeout: Duration::from_secs(5),
            ca_file: None,
            batch: Some(super::batch::BatchOptions::default()),
        }
    }
}

/// Whether `--store` names a PostgreSQL database.
pub fn is_postgres_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read the database CA {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("bad certificate in {}", path.display()))?;
                roots.add(cert)?;
            }
        }
        None => {
            // Unreadable system certificates only matter when the server uses TLS; then
            // the handshake fails with a clear error.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Open the pool on `url`, migrate the schema and return the store. Fails if the
/// database cannot be reached within the pool's timeout or was migrated by a newer build.
pub async fn connect(url: &str, options: &PoolOptions) -> anyhow::Result<PgCenterStore> {
    // The URL carries the password: never echo it in an error.
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| anyhow::anyhow!("invalid --store PostgreSQL URL: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.timeout);
    }
    // A peer that vanished without a FIN (a partitioned database) is noticed.
    config.keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("edgeroute-center");
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if config.get_ssl_mode() == SslMode::Disable {
        Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    } else {
        let tls =
            tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(options.ca_file.as_deref())?);
        Manager::from_config(config, tls, manager_config)
    };
    let pool = Pool::builder(manager)
        .max_size(options.max_size.max(1))
        .timeouts(Timeouts {
            wait: Some(options.timeout),
            create: Some(options.timeout),
            recycle: Some(options.timeout),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .context("cannot build the database pool")?;
    let mut client = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the PostgreSQL store: {e}"))?;
    schema::migrate(&mut client)
        .await
        .context("cannot migrate the PostgreSQL store")?;
    let applied = schema::applied(&client).await?;
    if applied > schema::LATEST {
        anyhow::bail!(
            "the PostgreSQL store has schema version {applied}, newer than this build's {}: \
             upgrade this replica",
            schema::LATEST
        );
    }
    drop(client);
    Ok(match &options.batch {
        Some(batch) => PgCenterStore::with_group_commit(pool, batch),
        None => PgCenterStore::new(pool),
    })
}
