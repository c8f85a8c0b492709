//! The supervisor's side of the HTTP ingress: which deployments answer HTTP, under which
//! names.
//!
//! A hosted deployment whose component exports `wasi:http/incoming-handler` gets an
//! [`HttpService`] attached to the ingress's [`RouteTable`] whenever its worker starts (deploy,
//! restart of the node, upgrade: the new code replaces the old endpoint), and detached when it
//! stops or fails. The host names it claims (`--route`) are written to the route table, durably,
//! in the same step that installs it, and released when it stops — with its lease, too. A host
//! without an ingress refuses routes; a component without the handler is refused a route.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::super::http::{HttpEnv, HttpService, HttpShare};
use super::super::kv::Kv;
use super::super::logs::Logs;
use super::super::runtime::{Compiled, LeaseInfo, Runtime};
use super::super::wire::{Refusal, RefusalCode};
use crate::ingress::{IngressSettings, RouteError, RouteTable};
use crate::lease::Meter;
use crate::plugin::deployment::Record;

/// The ingress as the supervisor sees it.
#[derive(Clone)]
pub(crate) struct HttpSide {
    pub routes: Arc<RouteTable>,
    pub settings: Arc<IngressSettings>,
    /// Whether the ingress speaks TLS, and the port it listens on: the deployments' URLs.
    pub tls: bool,
    pub port: u16,
    /// Each deployment's allowance (in-flight permits, memory), kept across the services of
    /// its successive generations until it is released.
    pub shares: Arc<Mutex<HashMap<String, Arc<HttpShare>>>>,
}

impl std::fmt::Debug for HttpSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSide")
            .field("tls", &self.tls)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Why a deploy's routes are refused.
pub(crate) fn refusal(e: &RouteError) -> Refusal {
    let code = match e {
        RouteError::Taken { .. } => RefusalCode::Conflict,
        _ => RefusalCode::Invalid,
    };
    Refusal::new(code, e.to_string())
}

/// `--route` onto a host without an ingress.
pub(crate) fn no_ingress() -> Refusal {
    Refusal::new(
        RefusalCode::Conflict,
        "this host runs no HTTP ingress (`[ingress] listen`); deploy without --route, or onto a host that `degroup find 'ingress=true'` lists",
    )
}

/// `--route` onto a component without the HTTP handler.
pub(crate) fn not_http() -> Refusal {
    Refusal::new(
        RefusalCode::Compile,
        "the component does not export wasi:http/incoming-handler, so it cannot serve --route; build it for the world `http-plugin` or deploy it without --route",
    )
}

impl HttpSide {
    /// The names as the route table keeps them (lower case), checked, and free or already
    /// this deployment's.
    pub(crate) fn check(&self, names: &[String], id: &str) -> Result<Vec<String>, Refusal> {
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let name = self.routes.check_name(n).map_err(|e| refusal(&e))?;
            if let Some(by) = self.routes.holder(&name)
                && by != id
            {
                return Err(refusal(&RouteError::Taken {
                    name,
                    by: String::new(),
                }));
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Claims the names for the deployment, durably (all or none).
    pub(crate) fn claim(&self, names: &[String], id: &str) -> Result<(), Refusal> {
        if names.is_empty() {
            return Ok(());
        }
        self.routes.claim(names, id).map_err(|e| refusal(&e))
    }

    /// Serves the deployment's HTTP with `compiled`, replacing what served it (or stops
    /// serving it, if the new code has no handler).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attach(
        &self,
        runtime: &Arc<Runtime>,
        r: &Record,
        compiled: &Compiled,
        info: &LeaseInfo,
        kv: Kv,
        logs: Logs,
        meter: &Meter,
        control: crate::plugin::control::Control,
    ) {
        let share = Arc::clone(
            self.shares
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(r.id.clone())
                .or_insert_with(|| HttpShare::new(&runtime.limits().http, info)),
        );
        let env = HttpEnv {
            share: Some(share),
            id: r.id.clone(),
            lease: r.lease_id,
            info: info.clone(),
            kv,
            logs,
            meter: meter.clone(),
            outgoing: self.settings.outgoing_for(&r.tenant),
            control,
        };
        match HttpService::new(runtime.clone(), compiled, env) {
            Some(service) => self.routes.attach(&r.id, service),
            None => self.routes.detach(&r.id),
        }
    }

    /// Stops serving the deployment (its names stay claimed).
    pub(crate) fn detach(&self, id: &str) {
        self.routes.detach(id);
    }

    /// Stops serving the deployment and gives its names back, durably.
    pub(crate) fn release(&self, id: &str) {
        self.routes.detach(id);
        self.shares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Err(e) = self.routes.release(id) {
            tracing::error!(deployment = %id, error = %e, "cannot release a stopped deployment's routes");
        }
    }

    /// Where the deployment answers, if it serves HTTP now or holds names.
    pub(crate) fn urls(&self, id: &str) -> Vec<String> {
        self.routes.urls(id, self.tls, self.port)
    }
}
