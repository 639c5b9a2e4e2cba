//! Helper of the benchmark harness (`bash bench/run.sh`); not a test and not
//! part of the demo. Two jobs:
//!
//! * `argon2 [N] [T]`: times one Argon2id verification at the crate's
//!   default parameters (`hash_password` once, then `verify_password_work` N
//!   times) and prints `argon2_verify_ms median=… mean=… min=…`, the input of
//!   the sign-in ceiling "cores ÷ one verification's time"; then runs N
//!   verifications on each of T threads at once (default: one per core) and
//!   prints `argon2_parallel threads=T per_s=…`, what the machine really
//!   gives when every core verifies.
//! * `mint --database-url URL --count N --per-user K --out FILE [--threads T]
//!   [--users-named PREFIX]`: creates `ceil(N / K)` users (named `PREFIX-0`,
//!   `PREFIX-1`, …; `bench-cookie-holder` unless given, so that a second
//!   mint into the same database names its own) and issues N remember-me
//!   cookies for them through the crate's real issuing step
//!   (`rememberme::testing::remember_me_cookie`: hashes stored, per-user cap
//!   applied, audit written; the last user gets K however few are left to
//!   write, so the table may hold up to K - 1 more), then writes one
//!   cookie value (`v1.<series>.<token>`) per line to FILE. Every line is
//!   valid exactly once: the first use rotates it.
//!
//! Run it the way the harness does:
//!
//! ```sh
//! cargo run --release --features testing --example bench_prepare -- argon2 20
//! ```

use std::io::Write as _;
use std::time::{Duration, Instant};

use rememberme::store::{UserId, UsersTable};
use rememberme::{Database, DieselStore, RememberMeConfig, Stores};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("argon2") => argon2(&args[1..]),
        Some("mint") => mint(&args[1..]),
        _ => Err(
            "usage: bench_prepare argon2 [N] [T] | mint --database-url URL --count N \
                  --per-user K --out FILE [--threads T] [--users-named PREFIX]"
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench_prepare: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn argon2(args: &[String]) -> Result<(), String> {
    let n: usize = match args.first() {
        Some(n) => n.parse().map_err(|_| format!("not a count: {n}"))?,
        None => 20,
    };
    let n = n.max(1);
    let threads: usize = match args.get(1) {
        Some(t) => t.parse().map_err(|_| format!("not a thread count: {t}"))?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let hash = rememberme::password::hash_password("bench-password-1");
    // One untimed run: page faults of the first 19 MiB allocation.
    assert!(rememberme::password::verify_password(
        &hash,
        "bench-password-1"
    ));
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            let ok = rememberme::password::verify_password(&hash, "bench-password-1");
            let elapsed = start.elapsed();
            assert!(ok, "the right password verifies");
            elapsed
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = times.iter().map(|&d| ms(d)).sum::<f64>() / n as f64;
    println!(
        "argon2_verify_ms median={:.3} mean={:.3} min={:.3} n={n}",
        ms(times[n / 2]),
        mean,
        ms(times[0])
    );

    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                for _ in 0..n {
                    assert!(rememberme::password::verify_password(
                        &hash,
                        "bench-password-1"
                    ));
                }
            });
        }
    });
    let per_s = (threads.max(1) * n) as f64 / start.elapsed().as_secs_f64();
    println!("argon2_parallel threads={threads} per_s={per_s:.1}");
    Ok(())
}

fn flag<'a>(args: &'a [String], name: &str) -> Result<&'a str, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| format!("missing {name}"))
}

fn number(args: &[String], name: &str) -> Result<usize, String> {
    let value = flag(args, name)?;
    value
        .parse()
        .map_err(|_| format!("{name}: not a number: {value}"))
}

fn mint(args: &[String]) -> Result<(), String> {
    let url = flag(args, "--database-url")?;
    let count = number(args, "--count")?;
    let per_user = number(args, "--per-user")?.max(1);
    let out = flag(args, "--out")?;
    let threads = number(args, "--threads").unwrap_or(4).max(1);
    let prefix = flag(args, "--users-named").unwrap_or("bench-cookie-holder");

    let db = Database::connect(url, threads as u32).map_err(|e| e.to_string())?;
    let table = UsersTable::open(db.clone()).map_err(|e| e.to_string())?;
    let config = RememberMeConfig::default();
    if per_user > config.max_tokens_per_user() as usize {
        return Err(format!(
            "--per-user {per_user} is above the per-user cap {}: older cookies would be revoked",
            config.max_tokens_per_user()
        ));
    }
    // One hash for every cookie holder: these users never type a password,
    // and 24 ms of Argon2 each would dominate the set-up.
    let hash = rememberme::password::hash_password("cookie-holder-password");
    let users = count.div_ceil(per_user);
    let start = Instant::now();
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let id = table
            .create_with_hash(&format!("{prefix}-{i}"), &hash, false)
            .map_err(|e| format!("creating user {i}: {e}"))?;
        ids.push(id);
    }
    let stores = Stores::new(DieselStore::new(db), table);

    // Each thread takes whole users, so a user's cap is never raced.
    let chunks: Vec<Vec<UserId>> = (0..threads)
        .map(|t| ids.iter().skip(t).step_by(threads).cloned().collect())
        .collect();
    let results: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let stores = &stores;
                let config = &config;
                scope.spawn(move || {
                    let mut cookies = Vec::with_capacity(chunk.len() * per_user);
                    for user in chunk {
                        for _ in 0..per_user {
                            let cookie =
                                rememberme::testing::remember_me_cookie(stores, config, user)
                                    .map_err(|e| format!("issuing for user {user}: {e}"))?;
                            cookies.push(cookie.value().to_owned());
                        }
                    }
                    Ok(cookies)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("minting thread panicked".into()))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(users * per_user);
    for result in results {
        all.extend(result?);
    }
    all.truncate(count);

    let mut file = std::io::BufWriter::new(
        std::fs::File::create(out).map_err(|e| format!("cannot create {out}: {e}"))?,
    );
    for cookie in &all {
        writeln!(file, "{cookie}").map_err(|e| format!("writing {out}: {e}"))?;
    }
    file.flush().map_err(|e| format!("writing {out}: {e}"))?;
    eprintln!(
        "minted {} remember-me cookies for {users} users in {:.1} s",
        all.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
