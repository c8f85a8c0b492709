//! The sweep: lapsed offers, expired leases, usage receipts, old nonces.

use super::super::book::{Lease, Role, SignedReceipt};
use super::super::contract::{EndReason, LeaseEnd, UsageReceipt};
use super::{LeaseError, Service};
use crate::signed::Envelope;

/// Most receipts signed for one lease in one sweep (a long-idle node catches up over sweeps).
const MAX_RECEIPTS_PER_SWEEP: usize = 64;

impl Service {
    pub(super) fn sweep(&mut self, now: u64) {
        let lapsed = self.book.expire_offers(now);
        if lapsed > 0 {
            tracing::debug!(lapsed, "offers not countersigned in time released");
        }
        for id in self.book.due_to_expire(now) {
            let Some(lease) = self.book.get(&id).cloned() else {
                continue;
            };
            let end = lease.contract.ends_at_ms;
            let result = match lease.stored.role {
                Role::Host => self
                    .end_as_host(&lease, end, EndReason::Expired)
                    .map(|_| ()),
                Role::Tenant => self
                    .end_lease(&lease, end, EndReason::Expired, None)
                    .map_err(LeaseError::from),
            };
            match result {
                Ok(()) => tracing::info!(lease = %lease.id_hex(), "lease expired"),
                Err(e) => {
                    tracing::error!(lease = %lease.id_hex(), error = %e, "cannot expire lease")
                }
            }
        }
        let mut receipts = Vec::new();
        let period = self.policy.receipt_period_ms.max(1000);
        for lease in self.book.active_hosted() {
            let until = now.min(lease.contract.ends_at_ms);
            let mark = lease
                .stored
                .receipts_until_ms
                .max(lease.contract.starts_at_ms);
            if mark.saturating_add(period) <= until {
                receipts.extend(self.receipts_until(lease, until, false));
            }
        }
        if let Err(e) = self.book.add_receipts(&receipts) {
            tracing::error!(error = %e, "cannot store usage receipts");
        }
        let window = self.policy.request_window_ms.saturating_mul(2);
        self.nonces
            .retain(|_, (_, seen)| seen.saturating_add(window) > now);
    }

    /// Signs receipts for the whole periods between the lease's receipt mark and `until`; with
    /// `last`, also the partial period up to `until` (the lease ends there).
    pub(super) fn receipts_until(
        &self,
        lease: &Lease,
        until: u64,
        last: bool,
    ) -> Vec<SignedReceipt> {
        let period = self.policy.receipt_period_ms.max(1000);
        let c = &lease.contract;
        let mut start = lease.stored.receipts_until_ms.max(c.starts_at_ms);
        let mut periods = Vec::new();
        while periods.len() < MAX_RECEIPTS_PER_SWEEP {
            let full_end = start.saturating_add(period);
            let end = if full_end <= until {
                full_end
            } else if last && until > start {
                until
            } else {
                break;
            };
            periods.push((start, end));
            start = end;
        }
        if periods.is_empty() {
            return Vec::new();
        }
        // The deployments' usage since the previous receipt goes on the newest period; storage
        // is a level, reported on every one.
        let usage = self.meter.take(&c.lease_id);
        let newest = periods.len() - 1;
        let mut out = Vec::with_capacity(periods.len());
        for (i, (start, end)) in periods.into_iter().enumerate() {
            let (fuel, mem, compile_ms) = if i == newest {
                (usage.fuel, usage.peak_mem_bytes, usage.compile_cpu_ms)
            } else {
                (0, 0, 0)
            };
            let receipt = UsageReceipt {
                lease_id: c.lease_id,
                host: c.host,
                tenant: c.tenant,
                period_start_ms: start,
                period_end_ms: end,
                wall_ms: end - start,
                cpu_fuel: fuel,
                peak_mem_bytes: mem,
                storage_bytes: usage.storage_bytes,
                compile_cpu_ms: compile_ms,
            };
            match Envelope::seal_kind(self.identity.signing_key(), &receipt) {
                Ok(env) => out.push(SignedReceipt {
                    lease_id: c.lease_id,
                    period_start_ms: start,
                    period_end_ms: end,
                    signed: env.to_bytes(),
                }),
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign a usage receipt");
                    break;
                }
            }
        }
        out
    }

    /// Ends a lease this node hosts: final receipt, signed end notice, durable; returns the
    /// notice.
    pub(super) fn end_as_host(
        &mut self,
        lease: &Lease,
        at_ms: u64,
        reason: EndReason,
    ) -> Result<Vec<u8>, LeaseError> {
        let c = &lease.contract;
        let receipts = self.receipts_until(lease, at_ms, true);
        self.book.add_receipts(&receipts)?;
        let end = LeaseEnd {
            lease_id: c.lease_id,
            host: c.host,
            tenant: c.tenant,
            at_ms,
            reason: reason.clone(),
        };
        let notice = Envelope::seal_kind(self.identity.signing_key(), &end)
            .map_err(|e| LeaseError::internal("signing the end notice", e))?
            .to_bytes();
        self.end_lease(lease, at_ms, reason, Some(notice.clone()))?;
        Ok(notice)
    }
}
