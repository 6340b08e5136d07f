//! The `switchboard` command: CLI (clap) → Config → tracing → `server::run`, plus the user and
//! migration commands that work on the same database.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use switchboard::config::{Config, Settings};
use switchboard::sip::auth::user_secrets;
use switchboard::store::Store;

/// jemalloc, with its background purging thread: freed memory goes back to the system within
/// seconds (dirty pages decay over 10 s), where glibc's malloc kept a burst's peak for good
/// (ARCHITECTURE.md, "Decisions worth knowing"). The library and its tests keep the system
/// allocator: this is a choice of the binary.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Voice-first contact-centre server"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options every command shares: where the configuration and the database are.
#[derive(Args, Clone, Default)]
struct CommonArgs {
    /// TOML configuration file (flags override its keys).
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default ./data); holds the SQLite database by default.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://... (default sqlite://<data-dir>/switchboard.db).
    #[arg(long, global = true, env = "SWITCHBOARD_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Manage SIP extensions (users).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage contact-centre agents (queues are in the dialplan).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Create or upgrade the database schema and exit.
    Migrate,
    /// Work with dialplans (IVR menus and routing; see dialplans/README.md).
    #[command(subcommand)]
    Dialplan(DialplanCommand),
    /// Manage keys for the HTTP API (`Authorization: Bearer <key>`).
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Print the HTTP API's OpenAPI 3.1 document (JSON), or with --html its HTML reference.
    Openapi {
        /// The self-contained HTML reference instead of the JSON document.
        #[arg(long)]
        html: bool,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Add an agent (offline until they set themselves available).
    Add {
        id: String,
        /// The extension whose registered phones ring for them.
        #[arg(long)]
        extension: String,
        /// Skills with levels, e.g. support:5,english:3 (each declared by the dialplan).
        #[arg(long, default_value = "")]
        skills: String,
        /// Contacts at once per channel, e.g. voice=1,chat=3.
        #[arg(long, default_value = "voice=1,chat=3")]
        capacity: String,
        #[arg(long)]
        name: Option<String>,
        /// No chat offered while on a call.
        #[arg(long)]
        no_chat_on_call: bool,
        /// May monitor calls.
        #[arg(long)]
        supervisor: bool,
    },
    /// List agents.
    List,
    /// Remove an agent (their history stays).
    Remove { id: String },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key. The key alone goes to stdout (one line, for scripts:
    /// `KEY=$(switchboard apikey create ...)`); its details go to stderr. It is shown only
    /// this once: only its hash is stored.
    Create {
        /// Who or what uses the key.
        #[arg(long)]
        name: String,
        /// read, control (read + act on calls) or admin (everything).
        #[arg(long, value_parser = ["read", "control", "admin"])]
        scope: String,
    },
    /// List keys: id, name, prefix, scope, created, revoked.
    List,
    /// Revoke a key by its id or its prefix (the 12 hex digits after `sb_`).
    Revoke { id_or_prefix: String },
}

#[derive(Subcommand)]
enum DialplanCommand {
    /// Check a dialplan and print every problem with file:line:column (exit status 1).
    Check {
        /// A directory of *.toml files or one file (default: `ivr.dialplans` of the config).
        path: Option<PathBuf>,
    },
}

#[derive(Args, Default)]
struct ServeArgs {
    /// SIP listening socket, udp:IP:PORT or tcp:IP:PORT (repeatable; replaces the file's list).
    #[arg(long = "sip-listen")]
    sip_listen: Vec<String>,
    /// HTTP listening address for /healthz and /metrics.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// RTP port range LOW-HIGH.
    #[arg(long)]
    rtp_ports: Option<String>,
    /// Address advertised in SDP and Via/Contact.
    #[arg(long)]
    public_ip: Option<IpAddr>,
    /// Source network whose requests are not challenged (repeatable).
    #[arg(long = "trusted-cidr")]
    trusted_cidr: Vec<String>,
    /// Seconds a call may ring before it is given up (408 to the caller).
    #[arg(long)]
    no_answer_timeout: Option<u64>,
    /// SIP domain and digest realm.
    #[arg(long)]
    domain: Option<String>,
    /// Record every call (overrides `recording.record_calls` in the config file).
    #[arg(long)]
    record_calls: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an extension.
    Add {
        ext: String,
        /// The SIP password (or set SWITCHBOARD_PASSWORD).
        #[arg(long, env = "SWITCHBOARD_PASSWORD")]
        password: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List extensions.
    List,
    /// Remove an extension and its registrations.
    Remove { ext: String },
    /// Change an extension's password (prompts when --password is not given).
    Passwd {
        ext: String,
        #[arg(long, env = "SWITCHBOARD_PASSWORD")]
        password: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Publishes the allocator's figures every few seconds: `switchboard_memory_allocated_bytes`
/// (live heap objects) and `switchboard_memory_resident_bytes` (what the allocator holds in
/// RAM, free pages not yet purged included).
async fn allocator_stats() {
    use tikv_jemalloc_ctl::{epoch, stats};
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        if epoch::advance().is_err() {
            return;
        }
        if let (Ok(allocated), Ok(resident)) = (stats::allocated::read(), stats::resident::read()) {
            metrics::gauge!("switchboard_memory_allocated_bytes").set(allocated as f64);
            metrics::gauge!("switchboard_memory_resident_bytes").set(resident as f64);
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let serve_args = match &command {
        Command::Serve(a) => Some(a),
        _ => None,
    };
    if let Command::Openapi { html } = &command {
        let doc = switchboard::api::openapi();
        let text = if *html {
            switchboard::api::docs::html(&doc)
        } else {
            switchboard::api::docs::json(&doc)
        };
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut settings = load_settings(&cli.common, serve_args)?;
    if let Command::Dialplan(cmd) = &command {
        let DialplanCommand::Check { path } = cmd;
        if path.is_none()
            && let Err(error) = switchboard::assets::resolve(&mut settings)
        {
            eprintln!("{error}");
            return Ok(ExitCode::from(1));
        }
        return Ok(dialplan_command(&settings, cmd));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Serve(_) => {
                tokio::spawn(allocator_stats());
                switchboard::server::run(settings).await
            }
            Command::Migrate => {
                Store::open(&settings.database_url).await?;
                println!(
                    "database {} is up to date",
                    redact_url(&settings.database_url)
                );
                Ok(())
            }
            Command::User(cmd) => user_command(&settings, cmd).await,
            Command::Agent(cmd) => agent_command(&settings, cmd).await,
            Command::Apikey(cmd) => apikey_command(&settings, cmd).await,
            Command::Dialplan(_) | Command::Openapi { .. } => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `dialplan check`: every diagnostic, then the count (status 1); or a summary of the plan.
fn dialplan_command(settings: &Settings, cmd: &DialplanCommand) -> ExitCode {
    let DialplanCommand::Check { path } = cmd;
    let path = path.as_ref().unwrap_or(&settings.ivr.dialplans);
    let options = switchboard::ivr::parse::CheckOptions {
        media_dir: settings.media.dir.clone(),
    };
    match switchboard::ivr::parse::load(path, &options) {
        Ok(plan) => {
            let files: Vec<String> = plan.files.iter().map(|f| f.display().to_string()).collect();
            println!(
                "dialplan OK: {} routes, {} flows, {} calendars, {} ring groups, {} queues (files: {})",
                plan.routes.len(),
                plan.flows.len(),
                plan.calendars.len(),
                plan.ring_groups.len(),
                plan.queues.len(),
                files.join(", ")
            );
            let speech = plan.speech_steps();
            if !speech.is_empty() && !switchboard::ivr::tts::available() {
                for at in speech {
                    println!(
                        "{at}: warning: speaks text, but espeak-ng is not installed (apt-get install espeak-ng); the step is skipped when it runs"
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                println!("{d}");
            }
            println!("{} error(s)", diagnostics.len());
            ExitCode::FAILURE
        }
    }
}

fn load_settings(common: &CommonArgs, serve: Option<&ServeArgs>) -> anyhow::Result<Settings> {
    let mut config = match &common.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(d) = &common.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(u) = &common.database_url {
        config.database_url = Some(u.clone());
    }
    if let Some(a) = serve {
        if !a.sip_listen.is_empty() {
            config.sip.listen = a.sip_listen.clone();
        }
        if let Some(h) = a.http_listen {
            config.http.listen = h;
        }
        if let Some(p) = &a.rtp_ports {
            config.rtp.ports = p.clone();
        }
        if let Some(ip) = a.public_ip {
            config.sip.public_ip = Some(ip);
        }
        if !a.trusted_cidr.is_empty() {
            config.sip.trusted_cidrs = a.trusted_cidr.clone();
        }
        if let Some(t) = a.no_answer_timeout {
            config.sip.no_answer_timeout_secs = t;
        }
        if let Some(d) = &a.domain {
            config.sip.domain = d.clone();
        }
        if a.record_calls {
            config.recording.record_calls = true;
        }
    }
    Ok(config.validate()?)
}

/// `voice=1,chat=3` → (voice, chat).
fn parse_capacity(s: &str) -> anyhow::Result<(u32, u32)> {
    let (mut voice, mut chat) = (1, 3);
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("capacity: \"{part}\" is not channel=number"))?;
        let n: u32 = v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n <= 50)
            .with_context(|| format!("capacity: \"{v}\" is not a number 0 to 50"))?;
        match k.trim() {
            "voice" => voice = n,
            "chat" => chat = n,
            other => anyhow::bail!("capacity: \"{other}\" is not a channel (voice, chat)"),
        }
    }
    Ok((voice, chat))
}

async fn agent_command(settings: &Settings, cmd: AgentCommand) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    match cmd {
        AgentCommand::Add {
            id,
            extension,
            skills,
            capacity,
            name,
            no_chat_on_call,
            supervisor,
        } => {
            anyhow::ensure!(
                switchboard::acd::is_skill_name(&id),
                "\"{id}\" is not an agent id (lower-case letters, digits, _ and -)"
            );
            check_extension(&extension)?;
            let skills = switchboard::acd::parse_skills(&skills).map_err(anyhow::Error::msg)?;
            let (voice, chat) = parse_capacity(&capacity)?;
            // Every skill must be one the dialplan declares.
            let mut settings = settings.clone();
            switchboard::assets::resolve(&mut settings)?;
            let options = switchboard::ivr::parse::CheckOptions {
                media_dir: settings.media.dir.clone(),
            };
            if let Ok(plan) = switchboard::ivr::parse::load(&settings.ivr.dialplans, &options) {
                for (skill, _) in &skills {
                    anyhow::ensure!(
                        plan.skills.contains(skill),
                        "skill \"{skill}\" is not declared by the dialplan ({}): add it to `skills = [...]`",
                        settings.ivr.dialplans.display()
                    );
                }
            }
            let now = switchboard::clock::unix_ms();
            store
                .add_agent(&switchboard::store::AgentRecord {
                    id: id.clone(),
                    extension,
                    name,
                    skills,
                    voice,
                    chat,
                    no_chat_on_call,
                    supervisor,
                    presence: "offline".into(),
                    reason: None,
                    created_ms: now,
                    updated_ms: now,
                })
                .await?;
            println!("added agent {id}");
        }
        AgentCommand::List => {
            for a in store.list_agents().await? {
                let skills: Vec<String> =
                    a.skills.iter().map(|(s, l)| format!("{s}:{l}")).collect();
                println!(
                    "{}\t{}\t{}\tvoice={},chat={}\t{}",
                    a.id,
                    a.extension,
                    skills.join(","),
                    a.voice,
                    a.chat,
                    a.presence
                );
            }
        }
        AgentCommand::Remove { id } => {
            anyhow::ensure!(store.remove_agent(&id).await?, "no agent {id}");
            println!("removed agent {id}");
        }
    }
    Ok(())
}

async fn user_command(settings: &Settings, cmd: UserCommand) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    let realm = settings.domain.as_str();
    match cmd {
        UserCommand::Add {
            ext,
            password,
            name,
        } => {
            check_extension(&ext)?;
            anyhow::ensure!(!password.is_empty(), "the password must not be empty");
            store
                .add_user(&ext, name.as_deref(), &user_secrets(&ext, realm, &password))
                .await?;
            println!("added extension {ext}");
        }
        UserCommand::List => {
            for u in store.list_users().await? {
                println!("{}\t{}", u.ext, u.name.as_deref().unwrap_or(""));
            }
        }
        UserCommand::Remove { ext } => {
            anyhow::ensure!(store.remove_user(&ext).await?, "no extension {ext}");
            println!("removed extension {ext}");
        }
        UserCommand::Passwd { ext, password } => {
            let password = match password {
                Some(p) => p,
                None => rpassword::prompt_password(format!("new password for {ext}: "))
                    .context("cannot read the password")?,
            };
            anyhow::ensure!(!password.is_empty(), "the password must not be empty");
            store
                .set_password(&ext, &user_secrets(&ext, realm, &password))
                .await?;
            println!("password changed for {ext}");
        }
    }
    Ok(())
}

async fn apikey_command(settings: &Settings, cmd: ApiKeyCommand) -> anyhow::Result<()> {
    use switchboard::store::Scope;
    let store = Store::open(&settings.database_url).await?;
    match cmd {
        ApiKeyCommand::Create { name, scope } => {
            let scope = Scope::parse(&scope).context("scope must be read, control or admin")?;
            let (record, key) = store.create_api_key(&name, scope).await?;
            println!("{key}");
            eprintln!(
                "created API key {} (name {:?}, scope {}, prefix {})",
                record.id, record.name, record.scope, record.prefix
            );
            eprintln!("the key is on stdout above; it will not be shown again");
        }
        ApiKeyCommand::List => {
            println!("id\tname\tprefix\tscope\tcreated\trevoked");
            for k in store.api_keys().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.prefix,
                    k.scope,
                    utc(k.created_ms),
                    k.revoked_ms.map(utc).unwrap_or_else(|| "-".into())
                );
            }
        }
        ApiKeyCommand::Revoke { id_or_prefix } => {
            match store.revoke_api_key(&id_or_prefix).await {
                Ok(()) => {}
                Err(switchboard::store::StoreError::NotFound(_)) => {
                    anyhow::bail!("no live API key with id or prefix {id_or_prefix}")
                }
                Err(e) => return Err(e.into()),
            }
            println!("revoked API key {id_or_prefix}");
        }
    }
    Ok(())
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Extensions are SIP user parts we route on: keep them to unreserved characters.
fn check_extension(ext: &str) -> anyhow::Result<()> {
    let ok = !ext.is_empty()
        && ext.len() <= 64
        && ext
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b));
    anyhow::ensure!(
        ok,
        "{ext:?} is not a valid extension (letters, digits, -_.!~*'()+)"
    );
    Ok(())
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn epoch_milliseconds_print_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
