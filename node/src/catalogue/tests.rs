use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::book::MAX_KEY_LEN;
use super::release::{MAX_CLOCK_SKEW_MS, MAX_ENVELOPE_SIZE};
use super::sync::{CatalogueSyncRequest, PAGE_LIMIT, answer};
use super::*;
use crate::resources::now_ms;
use crate::signed::Envelope;
use crate::store::{Domain, Store};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn hex_key(k: &SigningKey) -> String {
    hex::encode(k.verifying_key().to_bytes())
}

fn release(k: &SigningKey, name: &str, version: &str, hash: u8) -> Release {
    Release {
        publisher: k.verifying_key().to_bytes(),
        name: name.into(),
        version: version.into(),
        hash: [hash; 32],
        size: 1234,
        published_ms: now_ms(),
        description: "Says hello".into(),
        capabilities: vec!["kv".into(), "log".into()],
    }
}

fn yank_of(k: &SigningKey, r: &Release, hash: Hash) -> Yank {
    Yank {
        publisher: k.verifying_key().to_bytes(),
        name: r.name.clone(),
        version: r.version.clone(),
        hash,
        yanked_ms: now_ms(),
        reason: "broken".into(),
    }
}

fn seal<K: crate::signed::Kind>(k: &SigningKey, value: &K) -> Vec<u8> {
    Envelope::seal(k, K::TAG, postcard::to_stdvec(value).unwrap_or_default()).to_bytes()
}

/// A change to a valid release.
type Change = Box<dyn Fn(&mut Release)>;
/// Whether a parse error is the one expected.
type IsExpected = fn(&RefError) -> bool;

fn open() -> (tempfile::TempDir, Store, Catalogue) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("store: {e}"));
    let cat = Catalogue::open(&store).unwrap_or_else(|e| panic!("catalogue: {e}"));
    (dir, store, cat)
}

fn trusted(entries: &[(&str, &SigningKey)]) -> Vec<TrustedPublisher> {
    entries
        .iter()
        .map(|(name, k)| TrustedPublisher {
            name: (*name).into(),
            key: hex_key(k),
        })
        .collect()
}

fn parse(s: &str) -> Reference {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

#[test]
fn valid_release_accepted_duplicate_ignored_republish_rejected() {
    let (_d, _s, cat) = open();
    let k = key(1);
    let r = release(&k, "greeter", "0.1.0", 7);
    let bytes = seal(&k, &r);
    assert_eq!(cat.offer(&bytes, now_ms()), Verdict::Accepted);
    assert_eq!(cat.offer(&bytes, now_ms()), Verdict::Ignored("duplicate"));
    // Same identity and hash, other metadata: still a duplicate (first seen wins).
    let mut again = r.clone();
    again.description = "other words".into();
    assert_eq!(
        cat.offer(&seal(&k, &again), now_ms()),
        Verdict::Ignored("duplicate")
    );
    let mut other = r.clone();
    other.hash = [8; 32];
    assert_eq!(
        cat.offer(&seal(&k, &other), now_ms()),
        Verdict::Rejected("republished")
    );
    assert_eq!(cat.len(), 1);
    assert_eq!(cat.releases("greeter")[0].release, r);
    // The same name and version by another publisher is another release.
    let k2 = key(2);
    assert_eq!(
        cat.offer(&seal(&k2, &release(&k2, "greeter", "0.1.0", 8)), now_ms()),
        Verdict::Accepted
    );
    assert_eq!(cat.releases("greeter").len(), 2);
}

#[test]
fn every_tamper_of_a_release_envelope_is_rejected() {
    let (_d, _s, cat) = open();
    let k = key(1);
    let bytes = seal(&k, &release(&k, "greeter", "0.1.0", 7));
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= bit;
            assert!(
                matches!(cat.offer(&bad, now_ms()), Verdict::Rejected(_)),
                "flipping bit {bit:#x} of byte {i} went unnoticed"
            );
        }
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(cat.offer(&long, now_ms()), Verdict::Rejected("malformed"));
    assert_eq!(
        cat.offer(&bytes[..bytes.len() - 1], now_ms()),
        Verdict::Rejected("malformed")
    );
    assert_eq!(
        cat.offer(&vec![0; MAX_ENVELOPE_SIZE + 1], now_ms()),
        Verdict::Rejected("oversize")
    );
    assert!(cat.is_empty());
    // Signed by another key while naming the first publisher.
    let forged = seal(&key(2), &release(&k, "greeter", "0.1.0", 7));
    assert_eq!(
        cat.offer(&forged, now_ms()),
        Verdict::Rejected("wrong_signer")
    );
    // A valid envelope of another kind.
    let other = Envelope::seal(&k, "degroup/advert/v1", vec![1, 2, 3]).to_bytes();
    assert_eq!(cat.offer(&other, now_ms()), Verdict::Rejected("wrong_kind"));
    assert!(matches!(
        decode_item(&forged),
        Err(CatalogueError::Invalid(_))
    ));
    assert!(matches!(decode_item(&bytes), Ok(Item::Release(_))));
}

#[test]
fn field_rules_and_future_timestamps() {
    let (_d, _s, cat) = open();
    let k = key(1);
    let now = now_ms();
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|r| r.name = "Bad Name".into()), "bad_name"),
        (Box::new(|r| r.name = String::new()), "bad_name"),
        (Box::new(|r| r.version = "1".into()), "bad_version"),
        (Box::new(|r| r.version = "v1.0.0".into()), "bad_version"),
        (
            Box::new(|r| r.description = "two\nlines".into()),
            "bad_description",
        ),
        (
            Box::new(|r| r.description = "x".repeat(201)),
            "bad_description",
        ),
        (
            Box::new(|r| r.capabilities = (0..17).map(|i| format!("c{i}")).collect()),
            "bad_capabilities",
        ),
        (
            Box::new(|r| r.capabilities = vec!["x".repeat(33)]),
            "bad_capabilities",
        ),
        (
            Box::new(|r| r.capabilities = vec!["kv".into(), "kv".into()]),
            "bad_capabilities",
        ),
        (Box::new(|r| r.size = 0), "bad_size"),
        (Box::new(|r| r.size = MAX_RELEASE_SIZE + 1), "bad_size"),
        (
            Box::new(move |r| r.published_ms = now + MAX_CLOCK_SKEW_MS + 1_000),
            "future",
        ),
    ];
    for (i, (change, reason)) in cases.iter().enumerate() {
        let mut r = release(&k, "greeter", &format!("1.0.{i}"), 7);
        change(&mut r);
        assert_eq!(
            cat.offer(&seal(&k, &r), now),
            Verdict::Rejected(reason),
            "case {i}"
        );
    }
    // Limits themselves are fine, and a little clock skew is allowed.
    let mut r = release(&k, "greeter", "2.0.0-rc.1+build.5", 7);
    r.description = "é".repeat(100);
    r.capabilities = (0..16).map(|i| format!("{i:032}")).collect();
    r.size = MAX_RELEASE_SIZE;
    r.published_ms = now + MAX_CLOCK_SKEW_MS - 1_000;
    assert_eq!(cat.offer(&seal(&k, &r), now), Verdict::Accepted);
    assert_eq!(cat.len(), 1);
}

#[test]
fn yanks_before_after_and_by_another_key() {
    let (_d, _s, cat) = open();
    let k = key(1);
    let r = release(&k, "greeter", "0.1.0", 7);
    // The yank arrives first: kept, applied when the release comes.
    let y = seal(&k, &yank_of(&k, &r, r.hash));
    assert_eq!(cat.offer(&y, now_ms()), Verdict::Accepted);
    assert_eq!(cat.yanks(), 1);
    assert!(cat.is_empty());
    assert_eq!(cat.offer(&seal(&k, &r), now_ms()), Verdict::Accepted);
    let entry = &cat.releases("greeter")[0];
    assert_eq!(
        entry.yanked.as_ref().map(|y| y.reason.as_str()),
        Some("broken")
    );
    assert_eq!(cat.offer(&y, now_ms()), Verdict::Ignored("duplicate"));
    // A yank signed by another key naming the publisher; one by another key for itself
    // (naming no release of its own) is a pending yank of that key, not of this release.
    let r2 = release(&k, "greeter", "0.2.0", 9);
    assert_eq!(cat.offer(&seal(&k, &r2), now_ms()), Verdict::Accepted);
    let forged = seal(&key(2), &yank_of(&k, &r2, r2.hash));
    assert_eq!(
        cat.offer(&forged, now_ms()),
        Verdict::Rejected("wrong_signer")
    );
    assert!(
        cat.releases("greeter")
            .iter()
            .all(|e| e.release.version != "0.2.0" || e.yanked.is_none())
    );
    // A yank naming another hash than the release held.
    let wrong = seal(&k, &yank_of(&k, &r2, [1; 32]));
    assert_eq!(
        cat.offer(&wrong, now_ms()),
        Verdict::Rejected("yank_mismatch")
    );
    // A pending yank whose release turns out to have another hash is dropped.
    let r3 = release(&k, "greeter", "0.3.0", 3);
    assert_eq!(
        cat.offer(&seal(&k, &yank_of(&k, &r3, [4; 32])), now_ms()),
        Verdict::Accepted
    );
    assert_eq!(cat.offer(&seal(&k, &r3), now_ms()), Verdict::Accepted);
    assert_eq!(cat.yanks(), 1);
    // A future-dated yank.
    let mut late = yank_of(&k, &r2, r2.hash);
    late.yanked_ms = now_ms() + MAX_CLOCK_SKEW_MS + 60_000;
    assert_eq!(
        cat.offer(&seal(&k, &late), now_ms()),
        Verdict::Rejected("future")
    );
}

#[test]
fn publish_and_yank_own_releases() -> Result<(), CatalogueError> {
    let (_d, _s, cat) = open();
    let k = key(1);
    let r = release(&k, "greeter", "0.1.0", 7);
    let env = cat.publish(&k, r.clone())?;
    assert!(matches!(decode_item(&env)?, Item::Release(o) if o.value == r));
    // Idempotent for the same content, refused for other content.
    assert_eq!(cat.publish(&k, r.clone())?, env);
    let mut other = r.clone();
    other.hash = [9; 32];
    let err = cat.publish(&k, other);
    assert!(
        matches!(err, Err(CatalogueError::Republished { .. })),
        "{err:?}"
    );
    if let Err(e) = err {
        assert_eq!(e.code(), crate::error::ErrorCode::Conflict);
    }
    // Someone else's key for this publisher.
    assert!(matches!(
        cat.publish(&key(2), r.clone()),
        Err(CatalogueError::Invalid(Rejection::WrongSigner))
    ));
    let mut bad = release(&k, "greeter", "one", 7);
    bad.version = "one".into();
    assert!(matches!(
        cat.publish(&k, bad),
        Err(CatalogueError::Invalid(_))
    ));
    // Yank: only one's own release.
    assert!(matches!(
        cat.yank(&key(2), "greeter", "0.1.0", "", now_ms()),
        Err(CatalogueError::NotFound { .. })
    ));
    assert!(matches!(
        cat.yank(&k, "greeter", "0.9.0", "", now_ms()),
        Err(CatalogueError::NotFound { .. })
    ));
    assert!(matches!(
        cat.yank(&k, "greeter", "0.1.0", "bad\u{7}reason", now_ms()),
        Err(CatalogueError::Invalid(_))
    ));
    let y = cat.yank(&k, "greeter", "0.1.0", "security fix in 0.1.1", now_ms())?;
    assert!(matches!(decode_item(&y)?, Item::Yank(o) if o.value.hash == r.hash));
    assert_eq!(cat.yank(&k, "greeter", "0.1.0", "again", now_ms())?, y);
    let own = cat.own(&k.verifying_key().to_bytes());
    assert_eq!(own.len(), 1);
    assert!(own[0].yanked.is_some());
    assert!(cat.own(&key(2).verifying_key().to_bytes()).is_empty());
    Ok(())
}

#[test]
fn reopen_keeps_everything_and_drops_garbage() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let k = key(1);
    let digest;
    {
        let store = Store::open(dir.path())?;
        let cat = Catalogue::open(&store)?;
        cat.publish(&k, release(&k, "greeter", "0.1.0", 1))?;
        cat.publish(&k, release(&k, "greeter", "0.2.0", 2))?;
        cat.yank(&k, "greeter", "0.1.0", "old", now_ms())?;
        let k2 = key(2);
        let r = release(&k2, "other", "1.0.0", 3);
        assert_eq!(cat.offer(&seal(&k2, &r), now_ms()), Verdict::Accepted);
        // A pending yank survives too.
        let pending = release(&k2, "other", "2.0.0", 4);
        assert_eq!(
            cat.offer(&seal(&k2, &yank_of(&k2, &pending, pending.hash)), now_ms()),
            Verdict::Accepted
        );
        digest = cat.digest();
        let tree = store.tree(Domain::Releases)?;
        tree.insert(b"r/garbage", b"nope")?;
        store.flush()?;
    }
    let store = Store::open(dir.path())?;
    let cat = Catalogue::open(&store)?;
    assert_eq!(cat.len(), 3);
    assert_eq!(cat.yanks(), 2);
    assert_eq!(cat.digest(), digest);
    let greeter = cat.releases("greeter");
    assert_eq!(greeter[0].release.version, "0.2.0");
    assert!(greeter[1].yanked.is_some());
    assert_eq!(store.tree(Domain::Releases)?.get(b"r/garbage")?, None);
    Ok(())
}

#[test]
fn caps_per_publisher() {
    let (_d, _s, cat) = open();
    let k = key(1);
    for i in 0..MAX_PER_PUBLISHER {
        let r = release(&k, "many", &format!("0.{}.{}", i / 1000, i % 1000), 1);
        assert_eq!(cat.offer(&seal(&k, &r), now_ms()), Verdict::Accepted, "{i}");
    }
    let r = release(&k, "many", "9.9.9", 1);
    assert_eq!(
        cat.offer(&seal(&k, &r), now_ms()),
        Verdict::Rejected("publisher_full")
    );
    let k2 = key(2);
    assert_eq!(
        cat.offer(&seal(&k2, &release(&k2, "many", "9.9.9", 1)), now_ms()),
        Verdict::Accepted
    );
}

#[test]
fn search_orders_and_filters() {
    let (_d, _s, cat) = open();
    let (a, b) = (key(1), key(2));
    for (k, name, v) in [
        (&a, "greeter", "0.1.0"),
        (&a, "greeter", "0.10.0"),
        (&a, "greeter", "0.9.0"),
        (&b, "greeter", "1.0.0"),
        (&a, "counter", "1.0.0"),
    ] {
        let mut r = release(k, name, v, 1);
        if name == "counter" {
            r.description = "Counts HELLOS".into();
        }
        assert_eq!(cat.offer(&seal(k, &r), now_ms()), Verdict::Accepted);
    }
    let all = cat.search("", 100);
    let got: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e.release.name.as_str(), e.release.version.as_str()))
        .collect();
    let first_greeter = if a.verifying_key().to_bytes() < b.verifying_key().to_bytes() {
        vec![
            ("greeter", "0.10.0"),
            ("greeter", "0.9.0"),
            ("greeter", "0.1.0"),
            ("greeter", "1.0.0"),
        ]
    } else {
        vec![
            ("greeter", "1.0.0"),
            ("greeter", "0.10.0"),
            ("greeter", "0.9.0"),
            ("greeter", "0.1.0"),
        ]
    };
    let mut want = vec![("counter", "1.0.0")];
    want.extend(first_greeter);
    assert_eq!(got, want);
    assert_eq!(cat.search("HELLO", 10).len(), 5);
    assert_eq!(cat.search("count", 10).len(), 1);
    assert_eq!(cat.search("GREET", 2).len(), 2);
    assert_eq!(cat.by_hash(&[1; 32]).len(), 5);
    assert!(cat.by_hash(&[2; 32]).is_empty());
    assert_eq!(all[0].hash_hex, hex::encode([1u8; 32]));
    assert_eq!(all[0].publisher_hex, hex_key(&a));
}

#[test]
fn sync_pages_cover_everything_in_key_order() {
    let (_d, _s, cat) = open();
    let (_d2, _s2, other) = open();
    let k = key(1);
    for i in 0..150 {
        let r = release(&k, "pkg", &format!("1.0.{i}"), 1);
        assert_eq!(cat.offer(&seal(&k, &r), now_ms()), Verdict::Accepted);
    }
    let r = release(&k, "pkg", "1.0.3", 1);
    assert_eq!(
        cat.offer(&seal(&k, &yank_of(&k, &r, r.hash)), now_ms()),
        Verdict::Accepted
    );
    let probe = answer(
        &cat,
        &CatalogueSyncRequest {
            after: None,
            limit: 0,
        },
    );
    assert!(probe.items.is_empty());
    assert_eq!(probe.digest, Some(cat.digest()));
    assert_ne!(other.digest(), cat.digest());
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = answer(
            &cat,
            &CatalogueSyncRequest {
                after: after.clone(),
                limit: 1000,
            },
        );
        assert!(page.items.len() <= usize::from(PAGE_LIMIT));
        for item in &page.items {
            assert_eq!(other.offer(item, now_ms()), Verdict::Accepted);
        }
        pages += 1;
        match page.next {
            Some(next) => {
                assert!(after.as_ref().is_none_or(|a| next > *a));
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(other.len(), 150);
    assert_eq!(other.digest(), cat.digest());
    // An oversized cursor is answered with nothing.
    let bad = answer(
        &cat,
        &CatalogueSyncRequest {
            after: Some(vec![0; MAX_KEY_LEN + 1]),
            limit: 10,
        },
    );
    assert!(bad.items.is_empty() && bad.next.is_none());
}

#[test]
fn reference_parsing() {
    let k = "ab12";
    assert_eq!(
        parse("greeter"),
        Reference::Named {
            publisher: None,
            name: "greeter".into(),
            version: VersionSpec::Latest
        }
    );
    assert!(
        matches!(parse("greeter@0.1.0"), Reference::Named { version: VersionSpec::Exact(v), .. } if v == semver::Version::new(0, 1, 0))
    );
    assert!(matches!(
        parse("greeter@^0.1"),
        Reference::Named {
            version: VersionSpec::Range(_),
            ..
        }
    ));
    assert!(matches!(
        parse("greeter@~1.2"),
        Reference::Named {
            version: VersionSpec::Range(_),
            ..
        }
    ));
    assert!(matches!(
        parse("greeter@>=1, <2"),
        Reference::Named {
            version: VersionSpec::Range(_),
            ..
        }
    ));
    assert!(matches!(
        parse("greeter@latest"),
        Reference::Named {
            version: VersionSpec::Latest,
            ..
        }
    ));
    assert!(
        matches!(parse(&format!("{}/greeter", k.to_uppercase())), Reference::Named { publisher: Some(p), .. } if p == k)
    );
    let h = "00".repeat(31) + "ff";
    assert_eq!(
        parse(&format!("blake3:{h}")),
        Reference::Hash({
            let mut x = [0u8; 32];
            x[31] = 0xff;
            x
        })
    );
    for good in [
        "greeter",
        "greeter@0.1.0",
        "ab12/greeter@^0.1",
        "greeter@>=1, <2",
    ] {
        assert_eq!(parse(good).to_string(), good, "display of {good}");
    }
    assert_eq!(
        parse(&format!("blake3:{h}")).to_string(),
        format!("blake3:{h}")
    );
    let bad: &[(&str, IsExpected)] = &[
        ("", |e| matches!(e, RefError::Empty)),
        ("   ", |e| matches!(e, RefError::Empty)),
        ("blake3:xyz", |e| matches!(e, RefError::BadHash { .. })),
        ("blake3:abcd", |e| matches!(e, RefError::BadHash { .. })),
        ("Bad Name", |e| matches!(e, RefError::BadName(_))),
        ("greeter@", |e| matches!(e, RefError::BadVersion { .. })),
        ("greeter@one", |e| matches!(e, RefError::BadVersion { .. })),
        ("abc/greeter", |e| matches!(e, RefError::BadPrefix { .. })),
        ("xyz1/greeter", |e| matches!(e, RefError::BadPrefix { .. })),
        ("/greeter", |e| matches!(e, RefError::BadPrefix { .. })),
        ("ab12/", |e| matches!(e, RefError::BadName(_))),
    ];
    for (input, want) in bad {
        match input.parse::<Reference>() {
            Err(e) => {
                assert!(want(&e), "{input:?} gave {e:?}");
                assert_eq!(e.code(), crate::error::ErrorCode::BadInput);
                assert!(e.to_string().len() > 20);
            }
            Ok(r) => panic!("{input:?} parsed as {r:?}"),
        }
    }
    let long = "a".repeat(300);
    assert!(matches!(
        long.parse::<Reference>(),
        Err(RefError::TooLong { .. })
    ));
    let long_name = "a".repeat(65);
    assert!(matches!(
        long_name.parse::<Reference>(),
        Err(RefError::BadName(_))
    ));
}

fn offer_ok(cat: &Catalogue, k: &SigningKey, r: &Release) {
    assert_eq!(cat.offer(&seal(k, r), now_ms()), Verdict::Accepted);
}

#[test]
fn resolution_rules() {
    let (_d, _s, cat) = open();
    let (acme, other, evil) = (key(1), key(2), key(3));
    for (v, hash) in [
        ("0.1.0", 1),
        ("0.2.0", 5),
        ("0.3.0-beta.1", 6),
        ("0.1.5", 7),
    ] {
        offer_ok(&cat, &acme, &release(&acme, "greeter", v, hash));
    }
    let y = release(&acme, "greeter", "0.2.0", 5);
    assert_eq!(
        cat.offer(&seal(&acme, &yank_of(&acme, &y, y.hash)), now_ms()),
        Verdict::Accepted
    );
    offer_ok(&cat, &evil, &release(&evil, "greeter", "9.0.0", 9));
    offer_ok(&cat, &evil, &release(&evil, "wallet", "1.0.0", 10));
    offer_ok(&cat, &other, &release(&other, "wallet", "1.0.0", 11));
    offer_ok(&cat, &other, &release(&other, "beta", "0.1.0-rc.1", 12));
    offer_ok(&cat, &other, &release(&other, "beta", "0.1.0-rc.2", 13));
    let trust = trusted(&[("acme", &acme), ("other", &other)]);
    let version = |s: &str| -> Result<String, ResolveError> {
        resolve(&cat, &parse(s), &trust).map(|r| r.entry.release.version)
    };
    // Latest skips the yanked 0.2.0 and the pre-release; the evil 9.0.0 is untrusted.
    assert_eq!(version("greeter"), Ok("0.1.5".into()));
    assert_eq!(version("greeter@0.1.0"), Ok("0.1.0".into()));
    assert_eq!(version("greeter@^0.1"), Ok("0.1.5".into()));
    assert_eq!(version("greeter@>=0.1.0, <0.1.5"), Ok("0.1.0".into()));
    assert_eq!(version("greeter@=0.3.0-beta.1"), Ok("0.3.0-beta.1".into()));
    assert!(matches!(
        version("greeter@^0.2"),
        Err(ResolveError::NoMatch { .. })
    ));
    assert!(matches!(
        version("greeter@0.4.0"),
        Err(ResolveError::NoMatch { .. })
    ));
    match resolve(&cat, &parse("greeter@0.2.0"), &trust) {
        Err(e @ ResolveError::Yanked { .. }) => {
            assert!(
                e.to_string()
                    .contains(&format!("blake3:{}", hex::encode([5u8; 32]))),
                "{e}"
            );
            assert_eq!(e.code(), crate::error::ErrorCode::Conflict);
        }
        other => panic!("expected Yanked, got {other:?}"),
    }
    // Pre-releases only when there is nothing else.
    assert_eq!(version("beta"), Ok("0.1.0-rc.2".into()));
    // Untrusted only: the message says what to do.
    let evil_hex = hex_key(&evil);
    let only_acme = trusted(&[("acme", &acme)]);
    match resolve(&cat, &parse("wallet"), &only_acme) {
        Err(e @ ResolveError::Untrusted { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("[trust] publishers") && msg.contains("PREFIX/wallet"),
                "{msg}"
            );
            assert!(msg.contains(&evil_hex[..16]), "{msg}");
            assert_eq!(e.code(), crate::error::ErrorCode::Forbidden);
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    // Two trusted publishers of one name.
    let both = trusted(&[("evil", &evil), ("other", &other)]);
    match resolve(&cat, &parse("wallet"), &both) {
        Err(e @ ResolveError::Ambiguous { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("(evil)") && msg.contains("(other)"), "{msg}");
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    // An explicit prefix reaches an untrusted publisher.
    let evil_ref = format!("{}/greeter", &evil_hex[..8]);
    assert_eq!(version(&evil_ref), Ok("9.0.0".into()));
    assert!(matches!(
        resolve(&cat, &parse(&format!("{}/nothing", &evil_hex[..8])), &trust),
        Err(ResolveError::Unknown { .. })
    ));
    assert!(matches!(
        version("nothing"),
        Err(ResolveError::Unknown { .. })
    ));
    // By hash: found, with a warning when yanked; unknown otherwise.
    let by_hash = resolve(&cat, &Reference::Hash([5; 32]), &trust);
    match by_hash {
        Ok(r) => {
            assert_eq!(r.entry.release.version, "0.2.0");
            assert!(r.warning.as_deref().is_some_and(|w| w.contains("yanked")));
        }
        Err(e) => panic!("hash should resolve: {e}"),
    }
    let live = resolve(&cat, &Reference::Hash([9; 32]), &[]);
    assert!(live.is_ok_and(|r| r.warning.is_none()));
    assert!(matches!(
        resolve(&cat, &Reference::Hash([0xee; 32]), &trust),
        Err(ResolveError::Unknown { .. })
    ));
}

#[test]
fn ambiguous_explicit_prefix() {
    let (_d, _s, cat) = open();
    // Find two keys whose hex starts with the same 4 digits.
    let mut by_prefix: std::collections::HashMap<String, SigningKey> = Default::default();
    let mut pair = None;
    for seed in 0..=u16::MAX {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&seed.to_le_bytes());
        let k = SigningKey::from_bytes(&bytes);
        let p = hex_key(&k)[..4].to_string();
        if let Some(first) = by_prefix.get(&p) {
            pair = Some((first.clone(), k, p));
            break;
        }
        by_prefix.insert(p, k);
    }
    let Some((a, b, prefix)) = pair else {
        panic!("no shared prefix found");
    };
    offer_ok(&cat, &a, &release(&a, "greeter", "1.0.0", 1));
    offer_ok(&cat, &b, &release(&b, "greeter", "1.0.0", 2));
    match resolve(&cat, &parse(&format!("{prefix}/greeter")), &[]) {
        Err(e @ ResolveError::Ambiguous { .. }) => {
            assert_eq!(e.code(), crate::error::ErrorCode::BadInput)
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
}

#[test]
fn trust_table() {
    let good = TrustConfig {
        publishers: trusted(&[("acme", &key(1)), ("other", &key(2))]),
    };
    assert_eq!(good.validate(), Ok(()));
    assert_eq!(
        good.keys(),
        vec![
            key(1).verifying_key().to_bytes(),
            key(2).verifying_key().to_bytes()
        ]
    );
    let parsed: TrustConfig = toml::from_str(&format!(
        "publishers = [{{ name = \"acme\", key = \"{}\" }}]",
        hex_key(&key(1))
    ))
    .unwrap_or_else(|e| panic!("toml: {e}"));
    assert_eq!(parsed.validate(), Ok(()));
    assert!(toml::from_str::<TrustConfig>("publisher = []").is_err());
    assert_eq!(
        toml::from_str::<TrustConfig>("").ok(),
        Some(TrustConfig::default())
    );
    let bad_key = TrustConfig {
        publishers: vec![TrustedPublisher {
            name: "x".into(),
            key: "abcd".into(),
        }],
    };
    assert!(bad_key.validate().is_err_and(|e| e.contains("64 hex")));
    assert!(bad_key.keys().is_empty());
    let twice = TrustConfig {
        publishers: trusted(&[("a", &key(1)), ("b", &key(1))]),
    };
    assert!(twice.validate().is_err());
    let same_name = TrustConfig {
        publishers: trusted(&[("a", &key(1)), ("a", &key(2))]),
    };
    assert!(same_name.validate().is_err());
    let no_name = TrustConfig {
        publishers: trusted(&[("", &key(1))]),
    };
    assert!(no_name.validate().is_err());
}

#[test]
fn names_and_versions_are_shared_with_packages() {
    use crate::plugin::package;
    for name in ["greeter", "a", "a-b_c9"] {
        assert!(check_name(name).is_ok() && package::check_name(name).is_ok());
    }
    for name in ["", "Greeter", "9lives", "a b", &"a".repeat(65)] {
        assert!(check_name(name).is_err() && package::check_name(name).is_err());
    }
    assert!(package::check_version("1").is_ok());
    assert!(check_version("1").is_err());
    assert!(check_version("1.2.3-rc.1+b5").is_ok());
    assert!(check_version("01.2.3").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Latest is the highest non-yanked non-pre-release version, whatever the arrival order.
    #[test]
    fn latest_is_the_highest_live_version(
        versions in proptest::collection::btree_set((0u64..4, 0u64..4, 0u64..4, any::<bool>()), 1..12),
        yanked in proptest::collection::vec(any::<bool>(), 12),
        seed in any::<u64>(),
    ) {
        let (_d, _s, cat) = open();
        let k = key(1);
        let mut list: Vec<(semver::Version, bool)> = versions
            .iter()
            .zip(&yanked)
            .map(|(&(a, b, c, pre), &y)| {
                let mut v = semver::Version::new(a, b, c);
                if pre {
                    v.pre = semver::Prerelease::new("rc.1").unwrap_or(semver::Prerelease::EMPTY);
                }
                (v, y)
            })
            .collect();
        // Shuffle deterministically.
        let n = list.len();
        for i in 0..n {
            let j = usize::try_from(seed.rotate_left(u32::try_from(i).unwrap_or(0)) % (n as u64)).unwrap_or(0);
            list.swap(i, j);
        }
        for (i, (v, y)) in list.iter().enumerate() {
            let r = release(&k, "p", &v.to_string(), u8::try_from(i).unwrap_or(0));
            prop_assert_eq!(cat.offer(&seal(&k, &r), now_ms()), Verdict::Accepted);
            if *y {
                prop_assert_eq!(cat.offer(&seal(&k, &yank_of(&k, &r, r.hash)), now_ms()), Verdict::Accepted);
            }
        }
        let live: Vec<&semver::Version> = list.iter().filter(|(_, y)| !y).map(|(v, _)| v).collect();
        let want = live.iter().filter(|v| v.pre.is_empty()).max().or_else(|| live.iter().max()).map(|v| v.to_string());
        let got = resolve(&cat, &parse("p"), &trusted(&[("k", &k)])).ok().map(|r| r.entry.release.version);
        prop_assert_eq!(got, want);
        // Search lists one publisher's versions newest first.
        let listed: Vec<semver::Version> = cat.search("", 100).iter().filter_map(|e| semver::Version::parse(&e.release.version).ok()).collect();
        let mut sorted = listed.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        prop_assert_eq!(listed, sorted);
    }
}
