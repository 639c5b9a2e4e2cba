//! `rememberme`: the demo site and its admin CLI. The arguments are in
//! `cli.rs`, the admin commands in `commands.rs`, the site in `serve.rs`.

#![warn(clippy::too_many_lines)]

mod cli;
mod commands;
mod serve;

use clap::Parser as _;
use cli::{Cli, Command, TokensCommand, UserCommand};
use commands::{add_user, list_tokens, open, purge, revoke_tokens, set_admin};
use serve::serve;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: escape codes in a log file are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(&cli.database_url, cli.serve),
        Some(Command::Serve(args)) => serve(&cli.database_url, args),
        Some(Command::Migrate) => {
            open(&cli.database_url, 1).map(|_| eprintln!("migrations applied"))
        }
        Some(Command::User(UserCommand::Add { name, admin })) => {
            add_user(&cli.database_url, &name, admin)
        }
        Some(Command::User(UserCommand::SetAdmin { name, admin })) => {
            set_admin(&cli.database_url, &name, admin)
        }
        Some(Command::Tokens(TokensCommand::Purge { lockout_secs })) => purge(
            &cli.database_url,
            lockout_secs.unwrap_or(cli.serve.lockout_secs),
        ),
        Some(Command::Tokens(TokensCommand::List { user })) => {
            list_tokens(&cli.database_url, user.as_deref())
        }
        Some(Command::Tokens(TokensCommand::Revoke { user })) => {
            revoke_tokens(&cli.database_url, &user)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
