//! Test support shared by the crate's tests and the perf tool (feature `testing`): a throwaway
//! PostgreSQL server.
//!
//! [`ThrowawayPostgres::start`] runs `initdb` into a fresh temporary directory and starts
//! `postgres` on a free loopback port with durability off (`fsync`, `synchronous_commit` and
//! `full_page_writes`: a test server's data is thrown away). PostgreSQL refuses to run as root,
//! so as root both run as the `postgres` user (`runuser`). Dropping the value stops the server
//! (fast shutdown) and removes the directory, also while a test unwinds from a panic. The
//! server runs under a small `sh` guard that holds a pipe from this process: if the process
//! exits without dropping the value (a `static`, an abort, a kill), the pipe closes and the
//! guard stops the server and removes the directory.
//!
//! Binaries are looked up in `$HUMPYARD_PG_BIN`, then the newest `/usr/lib/postgresql/*/bin`,
//! then `PATH`.

use crate::sync::statics::{AtomicU64, Ordering};
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL server in a temporary directory, stopped and removed on drop.
pub struct ThrowawayPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    /// The guard shell and the pipe whose end tells it to stop the server.
    server: Option<(Child, ChildStdin)>,
}

impl fmt::Debug for ThrowawayPostgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrowawayPostgres")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl ThrowawayPostgres {
    /// Creates, starts and waits for a fresh server (about a second).
    ///
    /// # Errors
    ///
    /// No PostgreSQL binaries, `initdb` or the server failing, or no connection within 30 s.
    pub fn start() -> io::Result<ThrowawayPostgres> {
        let bin = find_bin()?;
        let as_postgres_user = running_as_root();
        let dir = std::env::temp_dir().join(format!(
            "humpyard-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut server = ThrowawayPostgres {
            dir,
            bin,
            port: 0,
            as_postgres_user,
            server: None,
        };
        if as_postgres_user {
            let (uid, gid) = postgres_user()?;
            std::os::unix::fs::chown(&server.dir, Some(uid), Some(gid))?;
        }
        let data = server.data_dir();
        let status = server
            .command("initdb")
            .args([
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !status.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&status.stderr).trim()
            )));
        }
        server.start_server()?;
        Ok(server)
    }

    /// A connection string for the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: open connections are cut), keeping its data.
    pub fn stop(&mut self) {
        self.stop_guard(true);
    }

    /// Closes the guard's pipe: it stops the postmaster (SIGINT, PostgreSQL's fast shutdown)
    /// and, unless `keep`, removes the directory.
    fn stop_guard(&mut self, keep: bool) {
        if let Some((mut guard, pipe)) = self.server.take() {
            if keep {
                let _ = std::fs::write(self.dir.join("keep"), b"");
            }
            drop(pipe);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = guard.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(pid) = self.postmaster_pid() {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            let _ = guard.kill();
            let _ = guard.wait();
        }
    }

    /// Starts the server again on the same port after [`stop`](Self::stop).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.start_server()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn start_server(&mut self) -> io::Result<()> {
        if self.port == 0 {
            self.port = free_port()?;
        }
        let data = self.data_dir();
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        let _ = std::fs::remove_file(self.dir.join("keep"));
        let server = self.command("postgres");
        let mut guard = Command::new("sh");
        guard
            .arg("-c")
            .arg(GUARD)
            .arg("sh")
            .arg(server.get_program())
            .args(server.get_args())
            .args([
                "-D",
                path_str(&data)?,
                "-p",
                &self.port.to_string(),
                "-k",
                path_str(&self.dir)?,
            ])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .env("HUMPYARD_PG_DATA", &data)
            .env("HUMPYARD_PG_DIR", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = guard.spawn()?;
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no pipe to the guard"))?;
        self.server = Some((child, pipe));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = postgres::Config::new()
                .host("127.0.0.1")
                .port(self.port)
                .user("postgres")
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(1))
                .connect(postgres::NoTls)
                .is_ok();
            if ready {
                return Ok(());
            }
            if let Some((child, _)) = self.server.as_mut() {
                if let Some(status) = child.try_wait()? {
                    let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                    return Err(io::Error::other(format!("postgres exited ({status}): {}", log.trim())));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "postgres did not accept connections in 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        self.stop_guard(false);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the server (`"$@"`) in the background, waits for its stdin to close, then stops the
/// postmaster, waits for it and removes the directory unless a `keep` file says otherwise.
const GUARD: &str = r#"
"$@" &
server=$!
read -r _ || true
pid=$(head -n 1 "$HUMPYARD_PG_DATA/postmaster.pid" 2>/dev/null)
[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
wait "$server"
[ -e "$HUMPYARD_PG_DIR/keep" ] || rm -rf "$HUMPYARD_PG_DIR"
"#;

fn path_str(path: &Path) -> io::Result<&str> {
    path.to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "temporary path is not UTF-8"))
}

/// A port the OS just handed out on loopback (free now; a race with another process is
/// possible but rare, and then the server fails to start with a clear error).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn find_bin() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HUMPYARD_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").exists())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no PostgreSQL binaries (initdb) found"))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(1).map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

/// The `postgres` user's uid and gid, from `/etc/passwd`.
fn postgres_user() -> io::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres"))
                .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "running as root and there is no postgres user"))
}

/// Migrates `schema` on the server at `url` up to migration `last` only, leaving the schema an
/// older humpyard would have (to test the later migrations on it). Not a stable API.
///
/// # Errors
///
/// As [`PgEventStore::connect`](crate::store::PgEventStore::connect).
#[doc(hidden)]
pub fn migrate_schema_to(url: &str, schema: &str, last: i32) -> Result<(), crate::store::StoreError> {
    crate::store::migrate_schema_to(url, schema, last)
}
