use super::*;
use crate::identity::Identity;
use crate::signed::Envelope;

fn contract(host: &Identity, tenant: &Identity) -> Contract {
    Contract {
        lease_id: [7; 16],
        version: 1,
        host: host.verifying_key().to_bytes(),
        tenant: tenant.verifying_key().to_bytes(),
        slice: Resources {
            cpu_millis: 4000,
            mem_bytes: 8 << 30,
            disk_bytes: 20 << 30,
            gpus: 0,
        },
        starts_at_ms: 1_000,
        ends_at_ms: 1_000 + 3_600_000,
        prices: Prices {
            cpu: 20_000,
            mem: 4_000,
            disk: 100,
            gpu: 0,
        },
        hourly_micros: 114_000,
        request_hash: [1; 32],
        offer_expires_at_ms: 31_000,
    }
}

fn doc(host: &Identity, tenant: &Identity, c: &Contract) -> LeaseDoc {
    let contract = Envelope::seal_kind(host.signing_key(), c)
        .map(|e| e.to_bytes())
        .unwrap_or_default();
    let acceptance = Envelope::seal_kind(
        tenant.signing_key(),
        &Acceptance {
            lease_id: c.lease_id,
            version: c.version,
            contract_hash: hash(&contract),
        },
    )
    .map(|e| e.to_bytes())
    .unwrap_or_default();
    LeaseDoc {
        contract,
        acceptance,
    }
}

#[test]
fn a_fully_signed_lease_verifies() -> Result<(), Box<dyn std::error::Error>> {
    let (host, tenant) = (Identity::generate()?, Identity::generate()?);
    let c = contract(&host, &tenant);
    let v = verify_doc(&doc(&host, &tenant, &c))?;
    assert_eq!(v.contract, c);
    Ok(())
}

#[test]
fn every_flipped_byte_is_caught() -> Result<(), Box<dyn std::error::Error>> {
    let (host, tenant) = (Identity::generate()?, Identity::generate()?);
    let good = doc(&host, &tenant, &contract(&host, &tenant));
    for i in 0..good.contract.len() {
        let mut d = good.clone();
        d.contract[i] ^= 0x01;
        assert!(verify_doc(&d).is_err(), "contract byte {i}");
    }
    for i in 0..good.acceptance.len() {
        let mut d = good.clone();
        d.acceptance[i] ^= 0x01;
        assert!(verify_doc(&d).is_err(), "acceptance byte {i}");
    }
    Ok(())
}

#[test]
fn wrong_signers_are_refused() -> Result<(), Box<dyn std::error::Error>> {
    let (host, tenant, other) = (
        Identity::generate()?,
        Identity::generate()?,
        Identity::generate()?,
    );
    let c = contract(&host, &tenant);
    // Contract signed by someone other than the host it names.
    assert_eq!(
        verify_doc(&doc(&other, &tenant, &c)).err(),
        Some(DocError::ContractSigner)
    );
    // Acceptance signed by someone other than the tenant.
    assert_eq!(
        verify_doc(&doc(&host, &other, &c)).err(),
        Some(DocError::AcceptanceSigner)
    );
    // An acceptance of another contract.
    let mut c2 = c.clone();
    c2.ends_at_ms += 1;
    let d1 = doc(&host, &tenant, &c);
    let d2 = doc(&host, &tenant, &c2);
    let mixed = LeaseDoc {
        contract: d1.contract,
        acceptance: d2.acceptance,
    };
    assert_eq!(verify_doc(&mixed).err(), Some(DocError::Mismatch));
    Ok(())
}

#[test]
fn end_notices_bind_to_their_lease() -> Result<(), Box<dyn std::error::Error>> {
    let (host, tenant) = (Identity::generate()?, Identity::generate()?);
    let c = contract(&host, &tenant);
    let end = LeaseEnd {
        lease_id: c.lease_id,
        host: c.host,
        tenant: c.tenant,
        at_ms: 5_000,
        reason: EndReason::Terminated("maintenance".into()),
    };
    let good = Envelope::seal_kind(host.signing_key(), &end)?.to_bytes();
    assert_eq!(verify_end(&good, &c)?, end);
    let by_tenant = Envelope::seal_kind(tenant.signing_key(), &end)?.to_bytes();
    assert_eq!(
        verify_end(&by_tenant, &c).err(),
        Some(DocError::EndMismatch)
    );
    Ok(())
}

#[test]
fn prices_round_up_and_never_overflow() {
    let prices = Prices {
        cpu: 20_000,
        mem: 4_000,
        disk: 100,
        gpu: 2_500_000,
    };
    let s = Resources {
        cpu_millis: 4000,
        mem_bytes: 8 << 30,
        disk_bytes: 20 << 30,
        gpus: 1,
    };
    assert_eq!(
        s.hourly_micros(&prices),
        80_000 + 32_000 + 2_000 + 2_500_000
    );
    let tiny = Resources {
        cpu_millis: 1,
        ..Resources::default()
    };
    assert_eq!(tiny.hourly_micros(&prices), 20, "0.001 core × 20000 µEUR");
    let huge = Resources {
        cpu_millis: u64::MAX,
        mem_bytes: u64::MAX,
        disk_bytes: u64::MAX,
        gpus: u32::MAX,
    };
    let max_prices = Prices {
        cpu: u64::MAX,
        mem: u64::MAX,
        disk: u64::MAX,
        gpu: u64::MAX,
    };
    assert_eq!(huge.hourly_micros(&max_prices), u64::MAX);
}

#[test]
fn lease_ids_follow_the_idempotency_key() {
    let a = new_lease_id(&[1; 32], &[2; 32], &[3; 16]);
    assert_eq!(a, new_lease_id(&[1; 32], &[2; 32], &[3; 16]));
    assert_ne!(a, new_lease_id(&[1; 32], &[2; 32], &[4; 16]));
    assert_ne!(a, new_lease_id(&[1; 32], &[9; 32], &[3; 16]));
}

#[test]
fn receipts_of_both_versions_open_and_v1_reads_as_no_compile_cpu()
-> Result<(), Box<dyn std::error::Error>> {
    let host = Identity::generate()?;
    let v2 = UsageReceipt {
        lease_id: [7; 16],
        host: host.verifying_key().to_bytes(),
        tenant: [2; 32],
        period_start_ms: 1,
        period_end_ms: 2,
        wall_ms: 1,
        cpu_fuel: 10,
        peak_mem_bytes: 20,
        storage_bytes: 30,
        compile_cpu_ms: 40,
    };
    let signed = Envelope::seal_kind(host.signing_key(), &v2)?.to_bytes();
    let (opened, signer) = open_receipt(&signed)?;
    assert_eq!((opened, signer), (v2.clone(), host.verifying_key()));
    // A receipt signed before compile CPU was metered (as the store may hold).
    let v1 = UsageReceiptV1 {
        lease_id: v2.lease_id,
        host: v2.host,
        tenant: v2.tenant,
        period_start_ms: 1,
        period_end_ms: 2,
        wall_ms: 1,
        cpu_fuel: 10,
        peak_mem_bytes: 20,
        storage_bytes: 30,
    };
    let signed = Envelope::seal_kind(host.signing_key(), &v1)?.to_bytes();
    let (opened, _) = open_receipt(&signed)?;
    assert_eq!(
        opened,
        UsageReceipt {
            compile_cpu_ms: 0,
            ..v2
        }
    );
    // Any other kind is refused.
    let end = Envelope::seal_kind(
        host.signing_key(),
        &ReleaseRequest {
            lease_id: [7; 16],
            at_ms: 1,
        },
    )?
    .to_bytes();
    assert!(open_receipt(&end).is_err());
    Ok(())
}
