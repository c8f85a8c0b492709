//! The reservation book against a simple model, with restarts, under proptest.

use proptest::prelude::*;

use super::*;
use crate::identity::Identity;
use crate::lease::contract::Contract;
use crate::resources::Prices;
use crate::signed::Envelope;

#[derive(Debug, Clone)]
enum Step {
    Reserve {
        tenant: usize,
        cpu: u64,
        mem: u64,
        hold: u64,
        len: u64,
    },
    Accept {
        pick: usize,
        forged: bool,
    },
    Release {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
    SetOffered {
        cpu: u64,
        mem: u64,
    },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..5u64, 0..5u64, 1..50u64, 1..200u64)
            .prop_map(|(tenant, cpu, mem, hold, len)| Step::Reserve { tenant, cpu, mem, hold, len }),
        4 => (any::<usize>(), prop::bool::weighted(0.1))
            .prop_map(|(pick, forged)| Step::Accept { pick, forged }),
        1 => any::<usize>().prop_map(|pick| Step::Release { pick }),
        2 => (1..60u64).prop_map(|ms| Step::Advance { ms }),
        1 => (0..12u64, 0..12u64).prop_map(|(cpu, mem)| Step::SetOffered { cpu, mem }),
        1 => Just(Step::Restart),
    ]
}

/// What the book should hold: offers (id, slice, expiry, envelope, tenant) and leases.
#[derive(Default)]
struct Model {
    offers: Vec<(LeaseId, Resources, u64, Vec<u8>, usize)>,
    leases: Vec<(LeaseId, Resources, u64)>,
}

impl Model {
    fn sum<'a>(it: impl Iterator<Item = &'a Resources>) -> Resources {
        it.fold(Resources::default(), |a, s| a.plus(s))
    }
    fn used(&self) -> Resources {
        Self::sum(self.leases.iter().map(|l| &l.1))
    }
    fn held(&self) -> Resources {
        Self::sum(self.offers.iter().map(|o| &o.1))
    }
}

fn slice(cpu: u64, mem: u64) -> Resources {
    Resources {
        cpu_millis: cpu * 1000,
        mem_bytes: mem << 30,
        disk_bytes: 0,
        gpus: 0,
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let open = || -> Result<LeaseBook, TestCaseError> {
        // sled's background flusher lets go of the file lock a moment after the last handle
        // is dropped; a restarted process never sees that, a restart in one process may.
        let mut tries = 0;
        let store = loop {
            match Store::open(dir.path()) {
                Err(crate::store::StoreError::Locked { .. }) if tries < 200 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.map_err(|e| TestCaseError::fail(e.to_string()))?,
            }
        };
        LeaseBook::open(&store).map_err(|e| TestCaseError::fail(e.to_string()))
    };
    let host = Identity::from_secret([1; 32]);
    let tenants: Vec<Identity> = (2..5u8).map(|i| Identity::from_secret([i; 32])).collect();
    let mut book = open()?;
    let mut model = Model::default();
    let mut offered = slice(8, 8);
    let mut now = 1_000u64;
    let mut next_id = 0u128;
    for step in steps {
        match step {
            Step::Reserve {
                tenant,
                cpu,
                mem,
                hold,
                len,
            } => {
                next_id += 1;
                let s = slice(*cpu, *mem);
                let c = Contract {
                    lease_id: next_id.to_be_bytes(),
                    version: 1,
                    host: host.verifying_key().to_bytes(),
                    tenant: tenants[*tenant].verifying_key().to_bytes(),
                    slice: s,
                    starts_at_ms: now,
                    ends_at_ms: now + len,
                    prices: Prices::default(),
                    hourly_micros: 0,
                    request_hash: [0; 32],
                    offer_expires_at_ms: now + hold,
                };
                let env = Envelope::seal_kind(host.signing_key(), &c)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .to_bytes();
                let fits = model.used().plus(&model.held()).plus(&s).fits_in(&offered);
                let r = book.reserve(
                    &offered,
                    HeldOffer::new(c.clone(), env.clone(), OfferKind::New),
                );
                prop_assert_eq!(r.is_ok(), fits, "reserve accepted iff it fits");
                if let Err(refusal) = r {
                    prop_assert_eq!(refusal.code, RefusalCode::Capacity);
                    prop_assert_eq!(
                        refusal.free,
                        Some(offered.minus(&model.used().plus(&model.held())))
                    );
                } else {
                    model
                        .offers
                        .push((c.lease_id, s, c.offer_expires_at_ms, env, *tenant));
                }
            }
            Step::Accept { pick, forged } => {
                if model.offers.is_empty() {
                    continue;
                }
                let i = pick % model.offers.len();
                let (id, s, _, env, tenant) = model.offers[i].clone();
                let signer = if *forged { &host } else { &tenants[tenant] };
                let acc = Acceptance {
                    lease_id: id,
                    version: 1,
                    contract_hash: hash(&env),
                };
                let bytes = Envelope::seal_kind(signer.signing_key(), &acc)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .to_bytes();
                let opened = Envelope::open::<Acceptance>(&bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                match book.prepare_commit(&opened, now) {
                    Ok(item) => {
                        prop_assert!(!forged, "a forged acceptance must not commit");
                        book.commit(&[item])
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let o = model.offers.remove(i);
                        let end = book.get(&id).map(|l| l.contract.ends_at_ms).unwrap_or(0);
                        model.leases.push((o.0, s, end));
                    }
                    Err(r) => prop_assert!(*forged, "refused: {r}"),
                }
            }
            Step::Release { pick } => {
                if model.leases.is_empty() {
                    continue;
                }
                let i = pick % model.leases.len();
                let (id, ..) = model.leases.remove(i);
                let ended = book
                    .end(&id, now, EndReason::Released, None)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(ended);
            }
            Step::Advance { ms } => {
                now += ms;
                book.expire_offers(now);
                model.offers.retain(|o| o.2 > now);
                for id in book.due_to_expire(now) {
                    book.end(&id, now, EndReason::Expired, None)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                model.leases.retain(|l| l.2 > now);
            }
            Step::SetOffered { cpu, mem } => offered = slice(*cpu, *mem),
            Step::Restart => {
                drop(book);
                book = open()?;
                model.offers.clear();
            }
        }
        prop_assert_eq!(book.used(), model.used());
        prop_assert_eq!(book.held(), model.held());
        prop_assert_eq!(book.offers_held(), model.offers.len());
        let active = book.list().iter().filter(|l| l.is_active()).count();
        prop_assert_eq!(active, model.leases.len());
        // The invariant holds unless the operator lowered the offer below what is leased.
        if model.used().plus(&model.held()).fits_in(&offered) {
            prop_assert!(book.check_invariant(&offered).is_ok());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn book_matches_model(steps in prop::collection::vec(step(), 1..40)) {
        run(&steps)?;
    }
}

#[test]
fn lowering_the_offer_keeps_leases_and_refuses_new_ones() -> Result<(), TestCaseError> {
    run(&[
        Step::Reserve {
            tenant: 0,
            cpu: 4,
            mem: 4,
            hold: 10,
            len: 100,
        },
        Step::Accept {
            pick: 0,
            forged: false,
        },
        Step::SetOffered { cpu: 2, mem: 2 },
        Step::Reserve {
            tenant: 1,
            cpu: 1,
            mem: 0,
            hold: 10,
            len: 100,
        },
        Step::Restart,
        Step::Reserve {
            tenant: 1,
            cpu: 1,
            mem: 0,
            hold: 10,
            len: 100,
        },
        Step::Advance { ms: 150 },
        Step::Reserve {
            tenant: 1,
            cpu: 1,
            mem: 0,
            hold: 10,
            len: 100,
        },
    ])
}
