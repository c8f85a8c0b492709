use ed25519_dalek::SigningKey;

use super::*;
use crate::capacity::advert::{MAX_ADVERT_SIZE, MAX_TTL_MS};
use crate::resources::{Inventory, Prices, now_ms};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn advert(signer: &SigningKey, seq: u64, issued: u64) -> Advert {
    Advert {
        host: signer.verifying_key().to_bytes(),
        seq,
        issued_at_ms: issued,
        expires_at_ms: issued + 600_000,
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
        total: Inventory {
            cpu_millis: 16_000,
            mem_bytes: 64 << 30,
            disk_bytes: 1 << 40,
            gpus: vec![],
        },
        free: Inventory::default(),
        bandwidth_bps: 0,
        country: "FR".into(),
        region: String::new(),
        operator: "Test SAS".into(),
        certs: vec!["SecNumCloud".into()],
        prices: Prices::default(),
        plugin_apis: vec![],
    }
}

fn seal(signer: &SigningKey, a: &Advert) -> Vec<u8> {
    Envelope::seal(
        signer,
        Advert::TAG,
        postcard::to_stdvec(a).unwrap_or_default(),
    )
    .to_bytes()
}

fn book() -> (tempfile::TempDir, Store, AdvertBook) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("store: {e}"));
    let book = AdvertBook::open(&store, now_ms()).unwrap_or_else(|e| panic!("book: {e}"));
    (dir, store, book)
}

#[test]
fn newer_accepted_duplicates_and_older_ignored() {
    let (_d, _s, book) = book();
    let now = now_ms();
    let k = key(1);
    let v2 = seal(&k, &advert(&k, 2, now));
    assert_eq!(book.offer(&v2, now), Verdict::Accepted);
    assert_eq!(book.offer(&v2, now), Verdict::Ignored("duplicate"));
    assert_eq!(
        book.offer(&seal(&k, &advert(&k, 1, now)), now),
        Verdict::Ignored("not_newer")
    );
    let mut same_seq = advert(&k, 2, now);
    same_seq.operator = "Other".into();
    assert_eq!(
        book.offer(&seal(&k, &same_seq), now),
        Verdict::Ignored("not_newer")
    );
    assert_eq!(
        book.offer(&seal(&k, &advert(&k, 3, now)), now),
        Verdict::Accepted
    );
    assert_eq!(book.len(), 1, "one advert per host");
}

#[test]
fn every_rejection_reason() {
    let (_d, _s, book) = book();
    let now = now_ms();
    let k = key(1);
    let rejected = |bytes: &[u8]| match book.offer(bytes, now) {
        Verdict::Rejected(r) => Some(r),
        _ => None,
    };

    let mut forged = seal(&k, &advert(&k, 1, now));
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(rejected(&forged), Some(Rejection::BadSignature));

    let other = key(2);
    let impostor = seal(&other, &advert(&k, 1, now));
    assert_eq!(rejected(&impostor), Some(Rejection::WrongSigner));

    let mut big = advert(&k, 1, now);
    big.operator = "x".repeat(MAX_ADVERT_SIZE);
    assert_eq!(rejected(&seal(&k, &big)), Some(Rejection::Oversize));

    assert!(matches!(
        rejected(b"\x01\x02garbage"),
        Some(Rejection::Malformed(_))
    ));

    let future = advert(&k, 1, now + MAX_CLOCK_SKEW + 60_000);
    assert_eq!(rejected(&seal(&k, &future)), Some(Rejection::FromTheFuture));

    let mut long = advert(&k, 1, now);
    long.expires_at_ms = now + MAX_TTL_MS + 1;
    assert_eq!(rejected(&seal(&k, &long)), Some(Rejection::TooLongLived));

    let mut old = advert(&k, 1, now - 700_000);
    old.expires_at_ms = now - 100_000;
    assert_eq!(rejected(&seal(&k, &old)), Some(Rejection::Expired));

    let mut country = advert(&k, 1, now);
    country.country = "ZZ".into();
    assert!(matches!(
        rejected(&seal(&k, &country)),
        Some(Rejection::Malformed(_))
    ));

    let mut trailing = seal(&k, &advert(&k, 1, now));
    trailing.push(0);
    assert!(matches!(rejected(&trailing), Some(Rejection::Malformed(_))));

    let wrong_tag = Envelope::seal(
        &k,
        "degroup/lease/v1",
        postcard::to_stdvec(&advert(&k, 1, now)).unwrap_or_default(),
    );
    assert!(matches!(
        rejected(&wrong_tag.to_bytes()),
        Some(Rejection::Malformed(_))
    ));

    assert!(book.is_empty(), "nothing rejected entered the book");
}

const MAX_CLOCK_SKEW: u64 = crate::capacity::advert::MAX_CLOCK_SKEW_MS;

#[test]
fn survives_reopen_and_drops_expired() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let now = now_ms();
    let (k1, k2) = (key(1), key(2));
    let first_seen;
    {
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let book = AdvertBook::open(&store, now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            book.offer(&seal(&k1, &advert(&k1, 5, now)), now),
            Verdict::Accepted
        );
        let mut short = advert(&k2, 1, now);
        short.expires_at_ms = now + 1000;
        assert_eq!(book.offer(&seal(&k2, &short), now), Verdict::Accepted);
        first_seen = book.get(&k1.verifying_key().to_bytes()).map(|(_, t)| t);
        store.flush().unwrap_or_else(|e| panic!("{e}"));
    }
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let later = now + 2000;
    let book = AdvertBook::open(&store, later).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(book.len(), 1, "the expired advert is gone");
    let (a, seen) = book
        .get(&k1.verifying_key().to_bytes())
        .unwrap_or_else(|| panic!("kept"));
    assert_eq!(a.seq, 5);
    assert_eq!(Some(seen), first_seen, "first acceptance time is kept");
    assert_eq!(
        book.offer(&seal(&k1, &advert(&k1, 5, now)), later),
        Verdict::Ignored("duplicate")
    );
}

#[test]
fn batch_matches_one_by_one() {
    let (_d, _s, book) = book();
    let now = now_ms();
    let keys: Vec<SigningKey> = (1..=20).map(key).collect();
    let mut items: Vec<Vec<u8>> = keys.iter().map(|k| seal(k, &advert(k, 1, now))).collect();
    let all = book.offer_batch(&items, now);
    assert!(all.iter().all(|v| *v == Verdict::Accepted));
    // One bad signature in a batch: it alone is rejected.
    items = keys.iter().map(|k| seal(k, &advert(k, 2, now))).collect();
    let last = items[7].len() - 1;
    items[7][last] ^= 1;
    let verdicts = book.offer_batch(&items, now);
    for (i, v) in verdicts.iter().enumerate() {
        if i == 7 {
            assert_eq!(*v, Verdict::Rejected(Rejection::BadSignature));
        } else {
            assert_eq!(*v, Verdict::Accepted);
        }
    }
}

#[test]
fn pages_cover_every_host_once() {
    let (_d, _s, book) = book();
    let now = now_ms();
    for seed in 1..=50u8 {
        let k = key(seed);
        assert_eq!(
            book.offer(&seal(&k, &advert(&k, 1, now)), now),
            Verdict::Accepted
        );
    }
    let mut seen = 0;
    let mut cursor = None;
    loop {
        let (page, next) = book.page(cursor, 7, now, &HashMap::new());
        seen += page.len();
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, 50);
    // What the requester already holds is not sent again; newer adverts are.
    let mut known: HashMap<[u8; 8], u64> = book.summary(1000).into_iter().collect();
    assert_eq!(known.len(), 50);
    assert!(book.page(None, 64, now, &known).0.is_empty());
    let k = key(9);
    known.insert(prefix(&k.verifying_key().to_bytes()), 0);
    assert_eq!(book.page(None, 64, now, &known).0.len(), 1);
    assert!(
        book.summary(10).is_empty(),
        "too many to summarise: ask for everything"
    );
}
