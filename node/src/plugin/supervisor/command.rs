//! What the supervisor's actor is asked, and on whose behalf.

use tokio::sync::oneshot;

use super::super::deployment::{Record, Side, View};
use super::super::logs::LogPage;
use super::super::package::Package;
use super::super::runtime::{Compiled, LeaseInfo};
use super::super::wire::{Refusal, Status};
use super::super::worker::Started;
use super::PluginError;

/// A verified deploy or upgrade, ready to install.
pub(crate) struct Install {
    pub record: Record,
    pub package: Package,
    pub compiled: Compiled,
    pub info: LeaseInfo,
    pub upgrade: bool,
    /// Host names to claim on the ingress (checked, lower case).
    pub routes: Vec<String>,
}

/// Who a request acts for: the host's operator (any deployment) or a tenant (its own only).
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    Operator,
    Tenant(String),
}

impl Caller {
    pub(crate) fn may_see(&self, r: &Record) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Tenant(t) => r.side == Side::Host && *t == r.tenant,
        }
    }
}

pub(crate) enum Command {
    List(oneshot::Sender<Vec<View>>),
    Counts(oneshot::Sender<(usize, usize)>),
    Get {
        id: String,
        reply: oneshot::Sender<Result<View, PluginError>>,
    },
    Record {
        id: String,
        reply: oneshot::Sender<Result<Record, PluginError>>,
    },
    /// What a tenant's node is told of its deployments here.
    Statuses {
        tenant: String,
        reply: oneshot::Sender<Vec<Status>>,
    },
    Status {
        id: String,
        caller: Caller,
        reply: oneshot::Sender<Result<Status, PluginError>>,
    },
    Logs {
        id: String,
        caller: Caller,
        after: u64,
        limit: u32,
        reply: oneshot::Sender<Result<LogPage, PluginError>>,
    },
    /// Whether a deploy or upgrade would be admitted now (checked again at `Install`): asked
    /// before compiling, so that what would be refused costs no compilation.
    Admit {
        record: Box<Record>,
        upgrade: bool,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Install {
        install: Box<Install>,
        reply: oneshot::Sender<Result<oneshot::Receiver<Started>, Refusal>>,
    },
    Stop {
        id: String,
        reason: String,
        caller: Caller,
        reply: oneshot::Sender<Result<Status, PluginError>>,
    },
    Message {
        id: String,
        from: String,
        payload: Vec<u8>,
        caller: Caller,
        reply: oneshot::Sender<Result<(), PluginError>>,
    },
    SaveTenant {
        record: Box<Record>,
        reply: oneshot::Sender<Result<(), PluginError>>,
    },
}
