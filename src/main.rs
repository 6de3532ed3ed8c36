use clap::{Parser, Subcommand};
use replbox::config::Config;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "replbox", version, about = "A self-hosted online IDE and REPL")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app (what `replbox` alone does).
    Serve,
    /// Exercises for teachers.
    Exercises {
        #[command(subcommand)]
        action: ExercisesAction,
    },
    /// Teacher accounts.
    Teacher {
        #[command(subcommand)]
        action: TeacherAction,
    },
}

#[derive(Subcommand)]
enum TeacherAction {
    /// Create a teacher account; the password is read from
    /// REPLBOX_TEACHER_PASSWORD or, when unset, the first line of stdin.
    Add { name: String },
}

#[derive(Subcommand)]
enum ExercisesAction {
    /// Load every exercise under DIR and report what is wrong, without serving.
    Check { dir: PathBuf },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "replbox=info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await,
        Some(Command::Exercises {
            action: ExercisesAction::Check { dir },
        }) => {
            let languages = cli.config.language_table()?;
            let ok = replbox::exercises::check(&dir, &languages, &mut std::io::stdout());
            std::process::exit(if ok { 0 } else { 1 });
        }
        Some(Command::Teacher {
            action: TeacherAction::Add { name },
        }) => {
            let password = match std::env::var("REPLBOX_TEACHER_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            let db =
                replbox::db::Db::open(&cli.config.data_dir, cli.config.database_url.as_deref())
                    .await?;
            let classroom = replbox::classroom::Classroom::new(db);
            match classroom.add_teacher(&name, &password).await {
                Ok(_) => {
                    println!("teacher {name:?} added");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("replbox: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    println!("replbox: serving on http://{}", listener.local_addr()?);
    replbox::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
