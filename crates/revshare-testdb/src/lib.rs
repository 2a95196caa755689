//! A fresh PostgreSQL database per test, for the test suites that run against the real server
//! (the store's conformance suite, the API tests, the CLI tests). Never used outside tests.
//!
//! The server is found at `host=127.0.0.1 user=postgres dbname=postgres`, or wherever
//! `REVSHARE_TEST_PG` says. Each [`PgTestDb`] creates its own database, named after the test
//! suite, the process and a counter, and drops it when it goes away. A server that cannot be
//! reached fails the test with a message saying so: PostgreSQL tests never skip silently.

use std::sync::atomic::{AtomicUsize, Ordering};

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The administrative connection: `REVSHARE_TEST_PG`, or the machine's local server.
fn admin() -> String {
    std::env::var("REVSHARE_TEST_PG").unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=postgres".to_owned())
}

/// A database created for one test and dropped after it.
pub struct PgTestDb {
    admin: String,
    /// Connects to this test's database.
    pub config: postgres::Config,
    /// The database's name.
    pub name: String,
}

impl PgTestDb {
    /// Creates `<suite>_<pid>_<n>`, replacing a stale one of that name.
    #[allow(clippy::panic, reason = "a test that needs PostgreSQL fails, saying why, when there is none")]
    pub fn new(suite: &str) -> PgTestDb {
        let admin = admin();
        let name = format!("{suite}_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        let created = postgres::Client::connect(&admin, postgres::NoTls).and_then(|mut client| {
            client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
            client.batch_execute(&format!("CREATE DATABASE {name}"))
        });
        if let Err(e) = created {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
            panic!(
                "this test needs PostgreSQL, and none answers at `{admin}` ({e}{cause}); start it \
                 (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) or set REVSHARE_TEST_PG to one that runs"
            );
        }
        let mut config: postgres::Config =
            admin.parse().unwrap_or_else(|e| panic!("REVSHARE_TEST_PG `{admin}` is not a connection string: {e}"));
        config.dbname(&name);
        PgTestDb { admin, config, name }
    }

    /// A `postgres://` URL of this test's database, for `revshare --database`.
    pub fn url(&self) -> String {
        let host = self.config.get_hosts().first().map_or_else(
            || "127.0.0.1".to_owned(),
            |h| match h {
                postgres::config::Host::Tcp(host) => host.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            },
        );
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres");
        format!("postgres://{user}@{host}:{port}/{}", self.name)
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let dropped = postgres::Client::connect(&self.admin, postgres::NoTls)
            .and_then(|mut c| c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)));
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}
