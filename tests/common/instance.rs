//! The real binary as a child process: `rememberme serve` and the CLI.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestDb;

/// A `rememberme serve` child process, killed on drop.
pub struct Instance {
    child: Child,
    pub base: String,
    /// Everything it has written to stderr so far, a line each.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    /// Kills it at once (SIGKILL): a crash, a power cut of the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop, as a service manager does (SIGTERM), and waits at
    /// most `wait` for it to exit. `None` if it did not.
    pub fn terminate(&mut self, wait: Duration) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "SIGTERM sent");
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rememberme"))
}

/// A session key file (in the directory returned, removed when it is
/// dropped), the database migrated, and `alice` with the password
/// `correct horse battery`: what a test of the real binary starts from.
pub fn prepare(db: &TestDb) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("session.key");
    std::fs::write(&key_file, actix_web::cookie::Key::generate().master()).unwrap();
    cli(db, &["migrate"], "");
    cli(db, &["user", "add", "alice"], "correct horse battery\n");
    (dir, key_file)
}

/// Starts `rememberme serve` on `db` with the session key in `key_file`:
/// a rotation grace of 1 s, the session checked against the database on
/// every request, no background purge.
pub fn start(db: &TestDb, key_file: &std::path::Path) -> Instance {
    start_with(
        db,
        key_file,
        &[
            "--rotation-grace-secs",
            "1",
            "--epoch-check-secs",
            "0",
            "--purge-interval-secs",
            "0",
        ],
    )
}

/// Starts `rememberme serve` on `db` with the session key in `key_file` (it
/// is created if missing), 2 connections and the flags `args`.
pub fn start_with(db: &TestDb, key_file: &std::path::Path, args: &[&str]) -> Instance {
    let mut all = vec!["--db-pool-size", "2"];
    all.extend_from_slice(args);
    start_as_shipped(db, key_file, &all)
}

/// [`start_with`] without the tests' own pool size: the defaults are the
/// binary's.
pub fn start_as_shipped(db: &TestDb, key_file: &std::path::Path, args: &[&str]) -> Instance {
    let mut child = binary()
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "1"])
        .args(args)
        .arg("--session-key-file")
        .arg(key_file)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let _ = tx.send(line[at + "listening on ".len()..].trim().to_owned());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the instance reports its address");
    Instance { child, base, log }
}

/// Runs the CLI on `db` with `stdin`; its stdout and stderr. Fails the test
/// if it fails.
pub fn cli(db: &TestDb, args: &[&str], stdin: &str) -> String {
    let mut child = binary()
        .args(args)
        .env("DATABASE_URL", &db.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
