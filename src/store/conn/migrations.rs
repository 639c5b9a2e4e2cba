//! The crate's migrations, and 0.1's upgrade.

use super::*;

/// The crate's own migrations: its tables as a new database gets them,
/// rememberme 0.1's history (finished before the upgrade of such a
/// database) and the upgrade of 0.1's tables (under the current first
/// version).
pub(super) const CRATE_MIGRATIONS: Migrations = Migrations {
    #[cfg(feature = "sqlite")]
    sqlite: MigrationSet {
        current: embed_migrations!("migrations/sqlite"),
        v0_1: Some((
            embed_migrations!("migrations/v0_1/sqlite"),
            embed_migrations!("migrations/upgrade_0_1/sqlite"),
        )),
    },
    #[cfg(feature = "postgres")]
    postgres: MigrationSet {
        current: embed_migrations!("migrations/postgres"),
        v0_1: Some((
            embed_migrations!("migrations/v0_1/postgres"),
            embed_migrations!("migrations/upgrade_0_1/postgres"),
        )),
    },
};

/// A set of migrations for each backend built in.
pub(crate) struct Migrations {
    #[cfg(feature = "sqlite")]
    pub sqlite: MigrationSet,
    #[cfg(feature = "postgres")]
    pub postgres: MigrationSet,
}

/// The first migration of rememberme 0.1 (the same version on both
/// backends): a database that has it was made by 0.1.
const V0_1_INIT: &str = "20261124000001";

/// The migrations of one backend: the crate's, and what a database made by
/// 0.1 runs first.
pub(crate) struct MigrationSet {
    pub current: EmbeddedMigrations,
    pub v0_1: Option<(EmbeddedMigrations, EmbeddedMigrations)>,
}

/// Runs `set` on `conn`: on a database made by 0.1, its pending 0.1
/// migrations and the upgrade first (which record the current first
/// version, so the current set goes on from there).
pub(crate) fn run_migrations<C>(conn: &mut C, set: MigrationSet) -> diesel::migration::Result<()>
where
    C: MigrationHarness<C::Backend> + diesel::Connection,
{
    if let Some((v0_1, upgrade)) = set.v0_1 {
        let applied = conn.applied_migrations()?;
        if applied.iter().any(|v| v.to_string() == V0_1_INIT) {
            conn.run_pending_migrations(v0_1)?;
            conn.run_pending_migrations(upgrade)?;
        }
    }
    conn.run_pending_migrations(set.current).map(drop)
}
