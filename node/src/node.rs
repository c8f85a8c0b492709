//! Assembling and running a node: configuration → identity → store → network → admin API,
//! then wait for SIGINT/SIGTERM and shut down in reverse order.
//!
//! Shutdown is one [`CancellationToken`]: the API stops accepting, the swarm task ends, the
//! store is flushed, and `api.addr`/`api.token` are removed. It is bounded: whatever has not
//! finished after [`SHUTDOWN_GRACE`] is abandoned so the process exits well within 5 s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ApiConfig, ApiError};
use crate::blobs::{BlobError, BlobProtocol, Blobs};
use crate::capacity::service::{self, Timing};
use crate::capacity::sync::SyncProtocol;
use crate::capacity::{AdvertBook, CapacityError, gossip};
use crate::catalogue::{self, Catalogue, CatalogueError, CatalogueSyncProtocol};
use crate::config::{self, ConfigError, FlagOverrides, NodeConfig};
use crate::group::{GroupProtocol, Groups, MeshMetrics, MeshProtocol};
use crate::identity::{Identity, IdentityError, KEY_FILE};
use crate::ingress::{Ingress, RouteTable};
use crate::lease::{LeaseProtocol, Meter};
use crate::metrics::NodeMetrics;
use crate::net::{NetError, NetParams, Network};
use crate::plugin::distribution::Distribution;
use crate::plugin::runtime::{Compiler, Runtime, SandboxError};
use crate::plugin::supervisor::HttpSide;
use crate::plugin::{DeployProtocol, PluginError};
use crate::resources::now_ms;
use crate::store::{Store, StoreError};

/// Longest time shutdown may take before the rest is abandoned.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Why a node could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Blobs(#[from] BlobError),
    #[error("cannot start the plugin sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Ingress(#[from] crate::ingress::IngressError),
}

/// Creates a data directory with an identity and a commented config file, unless they exist
/// (or `force`). Returns the identity and whether a new one was written.
pub fn init(data_dir: &Path, force: bool) -> Result<(Identity, bool), NodeError> {
    create_data_dir(data_dir)?;
    let key_path = data_dir.join(KEY_FILE);
    if key_path.exists() && !force {
        return Err(IdentityError::Exists { path: key_path }.into());
    }
    let identity = Identity::generate()?;
    identity.save(&key_path, force)?;
    let cfg_path = data_dir.join(config::CONFIG_FILE);
    if force && cfg_path.exists() {
        let _ = std::fs::rename(&cfg_path, cfg_path.with_extension("toml.bak"));
    }
    if !cfg_path.exists() {
        std::fs::write(&cfg_path, config::default_file()).map_err(|source| NodeError::DataDir {
            path: cfg_path.clone(),
            source,
        })?;
    }
    Ok((identity, true))
}

fn create_data_dir(dir: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| NodeError::DataDir {
            path: dir.to_owned(),
            source,
        })
}

/// Loads configuration and identity for `degroup node`, initialising the data directory on
/// first run. Configuration is validated before anything is written.
pub fn prepare(
    data_dir: &Path,
    flags: &FlagOverrides,
) -> Result<(NodeConfig, Identity), NodeError> {
    let config = config::load(data_dir, flags)?;
    let key_path = data_dir.join(KEY_FILE);
    let identity = if key_path.exists() {
        Identity::load(&key_path)?
    } else {
        let (id, _) = init(data_dir, false)?;
        tracing::info!(peer_id = %id.peer_id(), dir = %data_dir.display(), "initialised a new data directory");
        id
    };
    Ok((config, identity))
}

/// Runs the node until `shutdown` is cancelled (by a signal when `handle_signals`).
pub async fn run(
    config: NodeConfig,
    identity: Identity,
    shutdown: CancellationToken,
    handle_signals: bool,
) -> Result<(), NodeError> {
    let started = Instant::now();
    let store = Store::open(&config.data_dir)?;
    let meter = Meter::default();
    let mut registry = Registry::default();
    let metrics = NodeMetrics::register(&mut registry);
    let book = Arc::new(AdvertBook::open(&store, now_ms())?);
    // The HTTP ingress, when configured: its route table now (its metrics join the registry),
    // its listener on a runtime of its own; deployments are attached as the supervisor starts
    // them.
    let ingress = match config.ingress.listen {
        None => None,
        Some(_) => {
            let routes = RouteTable::open(&store, &config.ingress.domain)?;
            routes.metrics().register(&mut registry);
            let handle = Ingress::start(config.ingress.clone(), routes.clone(), shutdown.clone())?;
            let side = HttpSide {
                routes,
                settings: Arc::new(config.ingress.clone()),
                tls: config.ingress.tls.is_some(),
                port: handle.local_addr().port(),
                shares: Arc::default(),
            };
            Some((side, Arc::new(handle)))
        }
    };

    // The network, and what it carries: one line per gossip topic and per protocol.
    let mut net = Network::builder(
        &identity,
        NetParams {
            listen: config.listen.clone(),
            bootstrap: config.bootstrap.clone(),
            config: config.net.clone(),
        },
    );
    let catalogue = Arc::new(Catalogue::open(&store)?);
    net.topic(gossip::topic(book.clone(), metrics.clone()))?;
    net.topic(catalogue::topic(catalogue.clone(), metrics.clone()))?;
    let sync_inbound = net.serve::<SyncProtocol>()?;
    let catalogue_inbound = net.serve::<CatalogueSyncProtocol>()?;
    let lease_inbound = net.serve::<LeaseProtocol>()?;
    let deploy_inbound = net.serve::<DeployProtocol>()?;
    let blob_inbound = net.serve::<BlobProtocol>()?;
    let group_inbound = net.serve::<GroupProtocol>()?;
    let mesh_inbound = net.serve::<MeshProtocol>()?;
    let mesh_metrics = MeshMetrics::register(&mut registry);
    let catalogue_events = net.events();
    let net_events = net.events();
    let (net, net_task) = net.start(&mut registry, metrics.clone(), shutdown.clone())?;
    let registry = Arc::new(registry);
    if tokio::time::timeout(Duration::from_secs(5), net.wait_listening())
        .await
        .is_err()
    {
        tracing::warn!("no listen address after 5 s");
    }
    let (capacity, capacity_task) = service::start(
        identity.clone(),
        &store,
        &config.data_dir,
        book.clone(),
        net.clone(),
        config.offer.clone(),
        Timing {
            ttl_ms: config.capacity.ttl_ms(),
            debounce_ms: config.capacity.debounce_ms(),
        },
        service::plugin_apis(ingress.is_some()),
        shutdown.clone(),
    )?;
    let sync_task = tokio::spawn(crate::capacity::sync::run(
        net.clone(),
        book.clone(),
        metrics.clone(),
        sync_inbound,
        net_events,
        shutdown.clone(),
    ));
    // Packages: the catalogue (gossip + late-joiner sync) and the blob store (serving,
    // provider records, garbage collection).
    let catalogue_task = tokio::spawn(catalogue::sync(
        net.clone(),
        catalogue.clone(),
        catalogue_inbound,
        catalogue_events,
        shutdown.clone(),
    ));
    let blobs = Blobs::open(
        &config.data_dir,
        &store,
        config.blobs.clone(),
        net.clone(),
        metrics.clone(),
    )?;
    let blob_task = tokio::spawn(blobs.clone().serve(blob_inbound, shutdown.clone()));
    let gc_task = tokio::spawn(blobs.clone().collect_garbage(shutdown.clone()));
    let distribution = Distribution::new(
        identity.clone(),
        catalogue,
        blobs,
        net.clone(),
        store.clone(),
        config.trust.publishers.clone(),
        config.blobs.max_package,
    );
    let (leases, lease_task) = crate::lease::service::start(
        crate::lease::Deps {
            identity: identity.clone(),
            store: store.clone(),
            policy: config.lease.clone(),
            net: net.clone(),
            capacity: capacity.clone(),
            meter: meter.clone(),
        },
        lease_inbound,
        shutdown.clone(),
    )?;
    // Groups and the mesh: before the supervisor, which gives each deployment its mesh.
    let groups = Groups::open(
        identity.clone(),
        store.clone(),
        net.clone(),
        book.clone(),
        mesh_metrics,
        shutdown.clone(),
    )?;
    // Its protocols are answered only once the supervisor has resumed the deployments: a
    // document judged before a member's worker is back would find it absent (pushes meanwhile
    // wait in the protocols' queues, or are told "unavailable" and retried).
    let group_lease_events = leases.subscribe();
    let runtime = Runtime::new(
        config.plugin.clone(),
        Some(config.data_dir.join("cache")),
        Compiler::this_binary()?,
    )?;
    let (plugins, plugin_task) = crate::plugin::supervisor::start(
        crate::plugin::supervisor::Deps {
            identity: identity.clone(),
            store: store.clone(),
            runtime,
            leases: leases.clone(),
            net: net.clone(),
            adverts: book,
            meter,
            distribution,
            http: ingress.as_ref().map(|(side, _)| side.clone()),
            groups: Arc::new(groups.clone()),
        },
        deploy_inbound,
        shutdown.clone(),
    )
    .await?;
    let group_task = groups.start(group_inbound, mesh_inbound, group_lease_events);
    let api = Api::start(
        ApiConfig {
            bind: config.api,
            metrics_bind: config.metrics,
            data_dir: config.data_dir.clone(),
            started,
            ingress: ingress.as_ref().map(|(_, handle)| handle.clone()),
        },
        net.clone(),
        capacity,
        leases,
        plugins,
        groups,
        registry,
        metrics,
        shutdown.clone(),
    )
    .await?;
    tracing::info!(peer_id = %identity.peer_id(), api = %api.addr, "node running");

    if handle_signals {
        wait_for_signal(&shutdown).await?;
    } else {
        shutdown.cancelled().await;
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    let stop = async {
        api.stopped().await;
        let _ = plugin_task.await;
        let _ = group_task.await;
        let _ = lease_task.await;
        let _ = capacity_task.await;
        let _ = sync_task.await;
        let _ = catalogue_task.await;
        let _ = blob_task.await;
        let _ = gc_task.await;
        let _ = net_task.await;
        if let Some((_, handle)) = &ingress {
            handle.stopped().await;
        }
        if let Err(e) = store.flush_async().await {
            tracing::error!(error = %e, "final store flush failed");
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, stop).await.is_err() {
        tracing::warn!("shutdown did not finish in {SHUTDOWN_GRACE:?}; exiting anyway");
        let _ = store.flush();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal(shutdown: &CancellationToken) -> Result<(), NodeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(NodeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(NodeError::Signals)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
        () = shutdown.cancelled() => {}
    }
    Ok(())
}
