//! Package distribution as this node does it: publish, search, info, fetch (a mirror), yank,
//! and what a deploy needs — a reference resolved to a hash, a file staged for its host, a
//! package fetched by the host.
//!
//! It joins three pieces that know nothing of each other: the [`Catalogue`] of signed releases
//! and yanks (every node holds the whole federation's, so `search` asks nobody), the [`Blobs`]
//! store with its verified, multi-provider transfer, and the `[trust] publishers` this node
//! resolves names among.
//!
//! Signing stays with the publisher: the CLI signs a release or a yank with the publisher's
//! key and the node checks it against the package (same publisher, name, version, hash and
//! size) before it stores or gossips anything. A node never holds a publisher's key.
//!
//! Visibility: a published package, and one fetched because a release names it, is public —
//! served to anyone and announced as a provider record. A package deployed from a file is
//! private: the tenant's node serves it only to the hosts it deploys it to, and a host that
//! received it serves it to nobody.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::error::PluginError;
use super::package::Package;
use crate::blobs::{Blobs, Hash, Visibility};
use crate::catalogue::{
    CATALOGUE_TOPIC, Catalogue, Entry, Reference, Release, TrustedPublisher, Verdict, Yank, resolve,
};
use crate::identity::Identity;
use crate::net::Network;
use crate::resources::now_ms;
use crate::signed::Envelope;
use crate::store::Store;

/// How long `search` waits for provider lookups.
const SEARCH_PROVIDERS: Duration = Duration::from_millis(1500);
/// How long `info` waits for the provider lookup.
const INFO_PROVIDERS: Duration = Duration::from_secs(3);
/// Search results whose providers are looked up.
const SEARCH_LOOKUPS: usize = 20;
/// Most search results.
const SEARCH_LIMIT: usize = 200;

/// One release, as `search`, `info` and `publish` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageView {
    pub name: String,
    pub version: String,
    /// The publisher's key, hex.
    pub publisher: String,
    /// The name this node's `[trust] publishers` gives the publisher, if it trusts it.
    pub publisher_name: Option<String>,
    /// `blake3:<hex>` of the package file: what `deploy blake3:…` takes.
    pub reference: String,
    pub hash: String,
    pub size: u64,
    pub description: String,
    pub capabilities: Vec<String>,
    pub published_ms: u64,
    /// The yank's reason, when the version is yanked.
    pub yanked: Option<String>,
    /// Whether this node holds the package.
    pub local: bool,
    /// Provider peer ids found (absent when not looked up).
    pub providers: Option<Vec<String>>,
}

/// `plugin info`: the release a reference resolves to, and the publisher's other versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfoView {
    pub package: PackageView,
    pub versions: Vec<PackageView>,
    pub warning: Option<String>,
}

/// `plugin fetch`: what was fetched, from whom.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchView {
    pub package: PackageView,
    /// Bytes that travelled (0 when the package was already here).
    pub bytes_moved: u64,
    pub providers: Vec<String>,
    /// Providers dropped for sending data that failed verification.
    pub bad_providers: Vec<String>,
    pub cached: bool,
}

/// What a deploy sends its host: the package's hash and size, the reference the tenant
/// asked for, and who can serve it.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub hash: Hash,
    pub size: u64,
    pub reference: String,
    pub name: String,
    pub version: String,
    pub publisher: [u8; 32],
    /// Peers the host should ask first (this node, when it holds the package).
    pub hints: Vec<[u8; 32]>,
    pub warning: Option<String>,
}

/// The node's package distribution.
#[derive(Clone)]
pub struct Distribution {
    identity: Identity,
    catalogue: Arc<Catalogue>,
    blobs: Blobs,
    net: Network,
    store: Store,
    trust: Arc<Vec<TrustedPublisher>>,
    max_package: u64,
}

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distribution").finish_non_exhaustive()
    }
}

fn release_error(verdict: &Verdict) -> Option<PluginError> {
    match verdict {
        Verdict::Accepted | Verdict::Ignored(_) => None,
        Verdict::Rejected(reason) => Some(PluginError::Conflict(format!(
            "the catalogue refused it: {reason}"
        ))),
    }
}

impl Distribution {
    pub(crate) fn new(
        identity: Identity,
        catalogue: Arc<Catalogue>,
        blobs: Blobs,
        net: Network,
        store: Store,
        trust: Vec<TrustedPublisher>,
        max_package: u64,
    ) -> Self {
        Self {
            identity,
            catalogue,
            blobs,
            net,
            store,
            trust: Arc::new(trust),
            max_package,
        }
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.catalogue
    }

    /// The blob store.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// Largest package accepted.
    pub fn max_package(&self) -> u64 {
        self.max_package
    }

    fn trusted_name(&self, publisher: &[u8; 32]) -> Option<String> {
        let hex = hex::encode(publisher);
        self.trust
            .iter()
            .find(|t| t.key.eq_ignore_ascii_case(&hex))
            .map(|t| t.name.clone())
    }

    fn view(&self, e: &Entry, providers: Option<Vec<String>>) -> PackageView {
        let r = &e.release;
        PackageView {
            name: r.name.clone(),
            version: r.version.clone(),
            publisher: e.publisher_hex.clone(),
            publisher_name: self.trusted_name(&r.publisher),
            reference: format!("blake3:{}", e.hash_hex),
            hash: e.hash_hex.clone(),
            size: r.size,
            description: r.description.clone(),
            capabilities: r.capabilities.clone(),
            published_ms: r.published_ms,
            yanked: e.yanked.as_ref().map(|y| y.reason.clone()),
            local: self.blobs.has(&r.hash),
            providers,
        }
    }

    /// Provider peer ids of a hash: this node first when it holds it, then Kademlia's.
    async fn providers(&self, hash: &Hash, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        if self.blobs.has(hash) {
            out.push(self.net.local_peer_id().to_string());
        }
        if let Ok(found) = self
            .net
            .providers(crate::blobs::provider_key(hash), wait)
            .await
        {
            out.extend(found.iter().map(ToString::to_string));
        }
        out.dedup();
        out
    }

    /// Publishes a package with its release, signed by the package's publisher: checks both,
    /// stores the package (public, kept while published) and the release (durably), announces
    /// the provider record and gossips the release.
    pub async fn publish(
        &self,
        package: Vec<u8>,
        release: Vec<u8>,
    ) -> Result<PackageView, PluginError> {
        let pkg = Package::open_capped(&package, self.max_package)?;
        let opened = Envelope::open::<Release>(&release)
            .map_err(|e| PluginError::BadInput(format!("release: {e}")))?;
        let r = &opened.value;
        if opened.signer.to_bytes() != r.publisher || r.publisher != pkg.manifest.publisher {
            return Err(PluginError::BadInput(
                "the release must be signed by the key that signed the package; sign both with the same --key".into(),
            ));
        }
        if r.name != pkg.manifest.name || r.version != pkg.manifest.version {
            return Err(PluginError::BadInput(format!(
                "the release names {}@{}, the package is {}@{}",
                r.name, r.version, pkg.manifest.name, pkg.manifest.version
            )));
        }
        if r.hash != *blake3::hash(&package).as_bytes() || r.size != package.len() as u64 {
            return Err(PluginError::BadInput(
                "the release's hash or size is not the package's".into(),
            ));
        }
        if r.capabilities != pkg.manifest.capabilities {
            return Err(PluginError::BadInput(
                "the release's capabilities are not the ones the package's manifest requests"
                    .into(),
            ));
        }
        let hash = self.blobs.add(package, Visibility::Public).await?;
        self.blobs.hold(&hash, "release")?;
        if let Some(e) = release_error(&self.catalogue.offer(&release, now_ms())) {
            if self.catalogue.by_hash(&hash).is_empty() {
                let _ = self.blobs.release(&hash, "release");
            }
            return Err(e);
        }
        self.store.flush_async().await?;
        self.blobs.publicize(&hash)?;
        self.net.publish(CATALOGUE_TOPIC, release).await;
        let entry = self
            .catalogue
            .by_hash(&hash)
            .into_iter()
            .find(|e| e.release.publisher == pkg.manifest.publisher)
            .ok_or_else(|| {
                PluginError::NotFound("the release vanished from the catalogue".into())
            })?;
        tracing::info!(name = %entry.release.name, version = %entry.release.version, hash = %entry.hash_hex, "published");
        Ok(self.view(&entry, None))
    }

    /// Records and gossips a yank signed by a release's publisher.
    pub async fn yank(&self, yank: Vec<u8>) -> Result<PackageView, PluginError> {
        let opened = Envelope::open::<Yank>(&yank)
            .map_err(|e| PluginError::BadInput(format!("yank: {e}")))?;
        let y = &opened.value;
        let entry = self
            .catalogue
            .releases(&y.name)
            .into_iter()
            .find(|e| e.release.publisher == y.publisher && e.release.version == y.version)
            .ok_or_else(|| {
                PluginError::NotFound(format!(
                    "no release {}@{} of this publisher in the catalogue",
                    y.name, y.version
                ))
            })?;
        if let Some(e) = release_error(&self.catalogue.offer(&yank, now_ms())) {
            return Err(e);
        }
        self.store.flush_async().await?;
        // The publisher keeps serving it: a yanked version still deploys by its exact hash.
        self.net.publish(CATALOGUE_TOPIC, yank).await;
        let fresh = self
            .catalogue
            .by_hash(&entry.release.hash)
            .into_iter()
            .find(|e| e.release.publisher == y.publisher)
            .unwrap_or(entry);
        Ok(self.view(&fresh, None))
    }

    /// Releases whose name or description contains `text`, with their providers (for the
    /// first few).
    pub async fn search(&self, text: &str) -> Vec<PackageView> {
        let entries = self.catalogue.search(text, SEARCH_LIMIT);
        let lookups = entries
            .iter()
            .take(SEARCH_LOOKUPS)
            .map(|e| async move { Some(self.providers(&e.release.hash, SEARCH_PROVIDERS).await) });
        let mut providers = futures::future::join_all(lookups).await;
        providers.resize(entries.len(), None);
        entries
            .iter()
            .zip(providers)
            .map(|(e, p)| self.view(e, p))
            .collect()
    }

    fn resolve(&self, reference: &str) -> Result<(Entry, Option<String>), PluginError> {
        let parsed: Reference = reference
            .parse()
            .map_err(|e: crate::catalogue::RefError| PluginError::BadInput(e.to_string()))?;
        let resolved = resolve(&self.catalogue, &parsed, &self.trust)?;
        Ok((resolved.entry, resolved.warning))
    }

    /// The release a reference resolves to, its providers and the publisher's other versions.
    pub async fn info(&self, reference: &str) -> Result<InfoView, PluginError> {
        let (entry, warning) = self.resolve(reference)?;
        let providers = self.providers(&entry.release.hash, INFO_PROVIDERS).await;
        let mut versions: Vec<PackageView> = self
            .catalogue
            .releases(&entry.release.name)
            .iter()
            .filter(|e| e.release.publisher == entry.release.publisher)
            .map(|e| self.view(e, None))
            .collect();
        versions.sort_by(|a, b| {
            let va = semver::Version::parse(&a.version).ok();
            let vb = semver::Version::parse(&b.version).ok();
            vb.cmp(&va)
        });
        Ok(InfoView {
            package: self.view(&entry, Some(providers)),
            versions,
            warning,
        })
    }

    /// Mirrors a package: fetches it (verified) unless held, checks it is the package its
    /// release names, keeps it (pinned) and provides it. `from` are peers to ask first. A
    /// `blake3:` hash no release names is fetched too (from `from` and the providers
    /// Kademlia knows), verified as a package, and kept without being served to others.
    pub async fn fetch(&self, reference: &str, from: &[PeerId]) -> Result<FetchView, PluginError> {
        let parsed: Reference = reference
            .parse()
            .map_err(|e: crate::catalogue::RefError| PluginError::BadInput(e.to_string()))?;
        let entry = match resolve(&self.catalogue, &parsed, &self.trust) {
            Ok(r) => Some(r.entry),
            Err(e) => match parsed {
                Reference::Hash(_) => None,
                Reference::Named { .. } => return Err(e.into()),
            },
        };
        // Fetched private: it becomes public (served, announced) only once verified as the
        // package its release names.
        let (hash, size) = match (&entry, &parsed) {
            (Some(e), _) => (e.release.hash, Some(e.release.size)),
            (None, Reference::Hash(h)) => (*h, None),
            (None, Reference::Named { .. }) => {
                return Err(PluginError::NotFound(format!("no package {reference}")));
            }
        };
        if let Some(size) = size
            && size > self.max_package
        {
            return Err(PluginError::BadInput(format!(
                "{reference} is {size} bytes, over this node's package cap of {} bytes (`[blobs] max_package`)",
                self.max_package
            )));
        }
        let fetched = self
            .blobs
            .fetch(
                hash,
                size,
                from.to_vec(),
                Visibility::Private { peers: Vec::new() },
                None,
            )
            .await?;
        self.blobs.hold(&hash, "pin")?;
        let checked = match &entry {
            Some(_) => self.check_released(&hash).await,
            None => self.load(&hash).await,
        };
        let pkg = match checked {
            Ok(p) => p,
            Err(e) => {
                let _ = self.blobs.release(&hash, "pin");
                return Err(e);
            }
        };
        if entry.is_some() {
            self.blobs.publicize(&hash)?;
        }
        let view = match &entry {
            Some(e) => self.view(e, None),
            None => PackageView {
                name: pkg.manifest.name.clone(),
                version: pkg.manifest.version.clone(),
                publisher: pkg.publisher_hex(),
                publisher_name: self.trusted_name(&pkg.manifest.publisher),
                reference: format!("blake3:{}", hex::encode(hash)),
                hash: hex::encode(hash),
                size: fetched.size,
                description: String::new(),
                capabilities: pkg.manifest.capabilities.clone(),
                published_ms: 0,
                yanked: None,
                local: true,
                providers: None,
            },
        };
        Ok(FetchView {
            package: view,
            bytes_moved: fetched.bytes_moved,
            providers: fetched.providers,
            bad_providers: fetched.bad_providers,
            cached: fetched.cached,
        })
    }

    /// Reads a held blob and verifies it is a package signed by a publisher of one of the
    /// releases of its hash.
    async fn check_released(&self, hash: &Hash) -> Result<Package, PluginError> {
        let bytes = self.blobs.read(hash).await?;
        let pkg = Package::open_capped(&bytes, self.max_package)?;
        if !self
            .release_publishers(hash)
            .contains(&pkg.manifest.publisher)
        {
            return Err(PluginError::BadInput(
                "the package is signed by another publisher than its releases name".into(),
            ));
        }
        Ok(pkg)
    }

    /// Host side: a package it runs that its publisher released is public — served and
    /// announced as a provider record.
    pub(crate) fn provide_if_released(&self, hash: &Hash, publisher: &[u8; 32]) {
        if self.release_publishers(hash).contains(publisher)
            && let Err(e) = self.blobs.publicize(hash)
        {
            tracing::debug!(error = %e, "cannot provide a package");
        }
    }

    /// Tenant side: what a reference (or `blake3:` hash) deploys.
    pub(crate) fn stage_reference(&self, reference: &str) -> Result<Staged, PluginError> {
        let (entry, warning) = self.resolve(reference)?;
        let r = entry.release;
        if r.size > self.max_package {
            return Err(PluginError::BadInput(format!(
                "{}@{} is {} bytes, over this node's package cap",
                r.name, r.version, r.size
            )));
        }
        let me = self.identity.verifying_key().to_bytes();
        let hints = if self.blobs.has(&r.hash) {
            vec![me]
        } else {
            Vec::new()
        };
        Ok(Staged {
            hash: r.hash,
            size: r.size,
            reference: reference.to_owned(),
            name: r.name,
            version: r.version,
            publisher: r.publisher,
            hints,
            warning,
        })
    }

    /// Tenant side: a package file to deploy onto `host`: verified, kept here privately and
    /// served to that host only.
    pub(crate) async fn stage_file(
        &self,
        bytes: Vec<u8>,
        host: &PeerId,
    ) -> Result<Staged, PluginError> {
        let pkg = Package::open_capped(&bytes, self.max_package)?;
        let size = bytes.len() as u64;
        let hash = self
            .blobs
            .add(
                bytes,
                Visibility::Private {
                    peers: vec![host.to_string()],
                },
            )
            .await?;
        self.blobs.allow(&hash, host)?;
        let m = pkg.manifest;
        Ok(Staged {
            hash,
            size,
            reference: format!("{}@{} (file)", m.name, m.version),
            name: m.name,
            version: m.version,
            publisher: m.publisher,
            hints: vec![self.identity.verifying_key().to_bytes()],
            warning: None,
        })
    }

    /// The publisher of a hash's release, if the catalogue knows one.
    pub(crate) fn release_publishers(&self, hash: &Hash) -> Vec<[u8; 32]> {
        self.catalogue
            .by_hash(hash)
            .iter()
            .map(|e| e.release.publisher)
            .collect()
    }

    /// Host side: the package of a deploy, from the local store or fetched (verified) from
    /// the hinted peers and the providers Kademlia knows. Held for `holder` until released.
    pub(crate) async fn host_fetch(
        &self,
        hash: Hash,
        size: u64,
        hints: &[[u8; 32]],
        holder: &str,
    ) -> Result<Package, PluginError> {
        if size > self.max_package {
            return Err(PluginError::BadInput(format!(
                "the package is {size} bytes, over this host's cap of {} bytes",
                self.max_package
            )));
        }
        let peers: Vec<PeerId> = hints
            .iter()
            .filter_map(crate::identity::peer_id_of_bytes)
            .filter(|p| *p != self.net.local_peer_id())
            .collect();
        // Private until the deploy succeeds and the package is known to be released
        // ([`Distribution::provide_if_released`]).
        self.blobs
            .fetch(
                hash,
                Some(size),
                peers,
                Visibility::Private { peers: Vec::new() },
                None,
            )
            .await?;
        self.blobs.hold_soon(&hash, holder)?;
        let opened = match self.blobs.read(&hash).await {
            Ok(bytes) => Package::open_capped(&bytes, self.max_package).map_err(PluginError::from),
            Err(e) => Err(e.into()),
        };
        if opened.is_err() {
            let _ = self.blobs.release(&hash, holder);
        }
        opened
    }

    /// Host side, at start-up: a stored deployment's package.
    pub(crate) async fn load(&self, hash: &Hash) -> Result<Package, PluginError> {
        let bytes = self.blobs.read(hash).await?;
        Ok(Package::open_capped(&bytes, self.max_package)?)
    }

    /// Marks a package as used (or no longer used) by a deployment. Not flushed at once: a
    /// deployment's hold is restored from its record at every start.
    pub(crate) fn hold(&self, hash: &Hash, holder: &str) {
        if let Err(e) = self.blobs.hold_soon(hash, holder) {
            tracing::warn!(error = %e, "cannot record a package hold");
        }
    }

    pub(crate) fn release(&self, hash: &Hash, holder: &str) {
        if let Err(e) = self.blobs.release(hash, holder) {
            tracing::debug!(error = %e, "cannot release a package hold");
        }
    }
}
