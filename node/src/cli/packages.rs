//! `degroup plugin publish|search|info|fetch|yank`: the federation's packages, through the
//! running node's admin API.
//!
//! Releases and yanks are signed here, with the publisher's key (`--key`, else
//! `<data-dir>/publisher.key`, else the node's identity): the node checks them and gossips
//! them, it never holds a publisher's key. References are parsed here first, so a malformed
//! one is a usage error (exit 2) before any node is asked.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use super::display::escape;
use super::plugin::{publisher_key, read_package};
use super::{ApiClient, UsageError};
use crate::api::packages::{FetchBody, InfoQuery, Progress, PublishBody, SearchQuery, YankBody};
use crate::capacity::units::format_size;
use crate::catalogue::{Reference, Release, VersionSpec, Yank};
use crate::plugin::distribution::{FetchView, InfoView, PackageView};
use crate::plugin::package::Package;
use crate::resources::now_ms;
use crate::signed::Envelope;

/// Longest description of a release.
const MAX_DESCRIPTION: usize = 200;

/// `degroup plugin publish|search|info|fetch|yank`.
#[derive(Debug, clap::Subcommand)]
pub(super) enum PackageCommand {
    /// Publish a package to the federation: this node keeps and serves it, every node's
    /// catalogue lists it
    Publish {
        /// The signed package (.dgp) from `degroup plugin pack`
        package: PathBuf,
        /// One line saying what it is
        #[arg(long, default_value = "")]
        description: String,
        /// The publisher key that signed the package [default: <data-dir>/publisher.key, else
        /// the node's identity.key]
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Search the federation's catalogue (this node's copy: nobody is asked)
    Search {
        /// Text in the name or the description; nothing lists everything
        #[arg(default_value = "")]
        text: String,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// What a reference resolves to, its providers and the other versions
    Info {
        /// NAME[@VERSION|@RANGE], PUBLISHER_PREFIX/NAME[@…], or blake3:HASH
        reference: String,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Mirror a package: fetch it (verified), keep it, and serve it to others
    Fetch {
        /// NAME[@VERSION|@RANGE], PUBLISHER_PREFIX/NAME[@…], or blake3:HASH
        reference: String,
        /// Ask this peer first (a peer id); repeat
        #[arg(long = "from", value_name = "PEER_ID")]
        from: Vec<String>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a version you published (an exact blake3:HASH still deploys, with a warning)
    Yank {
        /// NAME@VERSION (or PUBLISHER_PREFIX/NAME@VERSION)
        reference: String,
        /// Why, shown to whoever meets it
        #[arg(long, default_value = "")]
        reason: String,
        /// The publisher key [default: <data-dir>/publisher.key, else the node's identity.key]
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Parses a reference; a malformed one is a usage error (exit 2).
pub(super) fn parse_reference(text: &str) -> anyhow::Result<Reference> {
    text.parse::<Reference>()
        .map_err(|e| UsageError(format!("{e}")).into())
}

fn one_line(text: &str) -> anyhow::Result<String> {
    if text.len() > MAX_DESCRIPTION || text.chars().any(char::is_control) {
        return Err(UsageError(format!(
            "--description: one line of at most {MAX_DESCRIPTION} bytes"
        ))
        .into());
    }
    Ok(text.to_owned())
}

pub(super) async fn run(dir: &Path, command: PackageCommand) -> anyhow::Result<()> {
    match command {
        PackageCommand::Publish {
            package,
            description,
            key,
            json,
        } => publish(dir, &package, &description, key, json).await,
        PackageCommand::Search { text, json } => search(dir, &text, json).await,
        PackageCommand::Info { reference, json } => info(dir, &reference, json).await,
        PackageCommand::Fetch {
            reference,
            from,
            json,
        } => fetch(dir, &reference, from, json).await,
        PackageCommand::Yank {
            reference,
            reason,
            key,
            json,
        } => yank(dir, &reference, &reason, key, json).await,
    }
}

async fn publish(
    dir: &Path,
    file: &Path,
    description: &str,
    key: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let description = one_line(description)?;
    let bytes = read_package(file)?;
    let pkg = Package::open(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a valid package: {e}", file.display()))?;
    let publisher = publisher_key(dir, key)?;
    if publisher.verifying_key().to_bytes() != pkg.manifest.publisher {
        anyhow::bail!(
            "{} is signed by publisher {}, not by this key ({}); publish with the key that packed it (--key FILE)",
            file.display(),
            pkg.publisher_hex(),
            hex::encode(publisher.verifying_key().to_bytes())
        );
    }
    if semver::Version::parse(&pkg.manifest.version).is_err() {
        return Err(UsageError(format!(
            "version {:?} is not semver (e.g. 0.1.0); pack it again with --version MAJOR.MINOR.PATCH",
            pkg.manifest.version
        ))
        .into());
    }
    let release = Release {
        publisher: pkg.manifest.publisher,
        name: pkg.manifest.name.clone(),
        version: pkg.manifest.version.clone(),
        hash: *blake3::hash(&bytes).as_bytes(),
        size: bytes.len() as u64,
        published_ms: now_ms(),
        description,
        capabilities: pkg.manifest.capabilities.clone(),
    };
    let envelope = Envelope::seal_kind(publisher.signing_key(), &release)
        .map_err(|e| anyhow::anyhow!("cannot sign the release: {e}"))?
        .to_bytes();
    let client = ApiClient::from_data_dir(dir)?;
    let view: PackageView = client
        .post(
            "/v1/packages",
            &PublishBody {
                package: b64(&bytes),
                release: b64(&envelope),
            },
        )
        .await?;
    if json {
        return super::print_json(&view);
    }
    println!("published {}@{}", escape(&view.name), escape(&view.version));
    println!("ref         {}", escape(&view.reference));
    println!("hash        blake3:{}", escape(&view.hash));
    println!("publisher   {}", escape(&view.publisher));
    println!("size        {}", format_size(view.size));
    Ok(())
}

fn publisher_text(v: &PackageView) -> String {
    let prefix = v.publisher.get(..12).unwrap_or(&v.publisher);
    match &v.publisher_name {
        Some(n) => format!("{} ({})", escape(n), escape(prefix)),
        None => format!("{} (untrusted)", escape(prefix)),
    }
}

async fn search(dir: &Path, text: &str, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_data_dir(dir)?;
    let views: Vec<PackageView> = client
        .get_query("/v1/packages", &SearchQuery { q: text.to_owned() })
        .await?;
    if json {
        return super::print_json(&views);
    }
    if views.is_empty() {
        println!("no package matches {text:?}");
        return Ok(());
    }
    println!(
        "{:<24} {:<12} {:<32} {:>10} {:>9}  DESCRIPTION",
        "NAME", "VERSION", "PUBLISHER", "SIZE", "PROVIDERS"
    );
    for v in &views {
        let providers = v
            .providers
            .as_ref()
            .map_or_else(|| "?".to_owned(), |p| p.len().to_string());
        let version = if v.yanked.is_some() {
            format!("{} (yanked)", escape(&v.version))
        } else {
            escape(&v.version).into_owned()
        };
        println!(
            "{:<24} {:<12} {:<32} {:>10} {:>9}  {}",
            escape(&v.name),
            version,
            publisher_text(v),
            format_size(v.size),
            providers,
            escape(&v.description)
        );
    }
    Ok(())
}

async fn info(dir: &Path, reference: &str, json: bool) -> anyhow::Result<()> {
    parse_reference(reference)?;
    let client = ApiClient::from_data_dir(dir)?;
    let view: InfoView = client
        .get_query(
            "/v1/packages/info",
            &InfoQuery {
                reference: reference.to_owned(),
            },
        )
        .await?;
    if json {
        return super::print_json(&view);
    }
    let p = &view.package;
    println!("package     {}@{}", escape(&p.name), escape(&p.version));
    println!("ref         {}", escape(&p.reference));
    println!("publisher   {}", publisher_text(p));
    println!("            {}", escape(&p.publisher));
    println!("size        {}", format_size(p.size));
    if !p.description.is_empty() {
        println!("about       {}", escape(&p.description));
    }
    println!("capabilities {}", escape(&p.capabilities.join(", ")));
    if let Some(reason) = &p.yanked {
        println!("yanked      {}", escape(reason));
    }
    let providers = p.providers.clone().unwrap_or_default();
    println!(
        "providers   {}{}",
        providers.len(),
        if p.local { " (this node holds it)" } else { "" }
    );
    for peer in &providers {
        println!("            {}", escape(peer));
    }
    if view.versions.len() > 1 {
        let list: Vec<String> = view
            .versions
            .iter()
            .map(|v| {
                if v.yanked.is_some() {
                    format!("{} (yanked)", escape(&v.version))
                } else {
                    escape(&v.version).into_owned()
                }
            })
            .collect();
        println!("versions    {}", list.join(", "));
    }
    if let Some(w) = &view.warning {
        println!("warning     {}", escape(w));
    }
    Ok(())
}

/// Draws a progress bar on stderr from the node's progress of a fetch, while it runs (only
/// when stderr is a terminal).
fn progress_bar(client: &ApiClient, hash: String) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let client = client.clone();
    Some(tokio::spawn(async move {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut shown = false;
        let started = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let path = format!("/v1/packages/progress/{hash}");
            if let Ok(p) = client.get::<Progress>(&path).await {
                // Only transfers longer than a moment get a bar.
                if !shown && started.elapsed() > Duration::from_millis(400) {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    shown = true;
                }
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
        }
    }))
}

async fn fetch(dir: &Path, reference: &str, from: Vec<String>, json: bool) -> anyhow::Result<()> {
    let parsed = parse_reference(reference)?;
    let client = ApiClient::from_data_dir(dir)?;
    // The hash, for the progress bar: a `blake3:` reference names it; a name is resolved.
    let hash = match parsed {
        Reference::Hash(h) => Some(hex::encode(h)),
        Reference::Named { .. } => {
            let known: InfoView = client
                .get_query(
                    "/v1/packages/info",
                    &InfoQuery {
                        reference: reference.to_owned(),
                    },
                )
                .await?;
            Some(known.package.hash)
        }
    };
    let bar = hash.and_then(|h| progress_bar(&client, h));
    let result: anyhow::Result<FetchView> = client
        .post(
            "/v1/packages/fetch",
            &FetchBody {
                reference: reference.to_owned(),
                from,
            },
        )
        .await;
    if let Some(bar) = bar {
        bar.abort();
    }
    let view = result?;
    if json {
        return super::print_json(&view);
    }
    let p = &view.package;
    if view.cached {
        println!(
            "{}@{} is already here (blake3:{}); nothing moved",
            escape(&p.name),
            escape(&p.version),
            escape(&p.hash)
        );
    } else {
        println!(
            "fetched {}@{} ({}) from {} provider(s), verified",
            escape(&p.name),
            escape(&p.version),
            format_size(view.bytes_moved),
            view.providers.len()
        );
    }
    for bad in &view.bad_providers {
        println!(
            "warning     provider {} sent data that failed verification; dropped",
            escape(bad)
        );
    }
    println!(
        "this node now keeps and provides blake3:{}",
        escape(&p.hash)
    );
    Ok(())
}

async fn yank(
    dir: &Path,
    reference: &str,
    reason: &str,
    key: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let reason = one_line(reason)?;
    match parse_reference(reference)? {
        Reference::Named {
            version: VersionSpec::Exact(_),
            ..
        } => {}
        _ => {
            return Err(UsageError(format!(
                "yank names one version: NAME@VERSION, e.g. greeter@0.1.0 (got {reference:?})"
            ))
            .into());
        }
    }
    let publisher = publisher_key(dir, key)?;
    let me = hex::encode(publisher.verifying_key().to_bytes());
    let client = ApiClient::from_data_dir(dir)?;
    // The publisher's own release of that name and version (a prefix of its own key makes
    // the reference resolve among its releases whoever this node trusts).
    let own = match reference.split_once('/') {
        Some(_) => reference.to_owned(),
        None => format!("{me}/{reference}"),
    };
    let known: InfoView = client
        .get_query(
            "/v1/packages/info",
            &InfoQuery {
                reference: own.clone(),
            },
        )
        .await?;
    let p = &known.package;
    if p.publisher != me {
        anyhow::bail!(
            "{own} is published by {}, not by this key; only its publisher can yank it",
            escape(&p.publisher)
        );
    }
    let hash: [u8; 32] = hex::decode(&p.hash)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("the node answered a malformed hash"))?;
    let y = Yank {
        publisher: publisher.verifying_key().to_bytes(),
        name: p.name.clone(),
        version: p.version.clone(),
        hash,
        yanked_ms: now_ms(),
        reason,
    };
    let envelope = Envelope::seal_kind(publisher.signing_key(), &y)
        .map_err(|e| anyhow::anyhow!("cannot sign the yank: {e}"))?
        .to_bytes();
    let view: PackageView = client
        .post(
            "/v1/packages/yank",
            &YankBody {
                yank: b64(&envelope),
            },
        )
        .await?;
    if json {
        return super::print_json(&view);
    }
    println!(
        "yanked {}@{}: new deploys of it by name are refused; blake3:{} still deploys, with a warning",
        escape(&view.name),
        escape(&view.version),
        escape(&view.hash)
    );
    Ok(())
}
