use proptest::prelude::*;

use super::*;
use crate::capacity::advert::Advert;
use crate::resources::{Gpu, Inventory, Prices};

const NOW: u64 = 1_800_000_000_000;

fn host(n: u8, country: &str, cpu: u64, mem_gib: u64, price_cpu: u64) -> Advert {
    Advert {
        host: [n; 32],
        seq: 1,
        issued_at_ms: NOW - 1000 * u64::from(n),
        expires_at_ms: NOW + 600_000,
        addrs: vec![],
        total: Inventory::default(),
        free: Inventory {
            cpu_millis: cpu * 1000,
            mem_bytes: mem_gib << 30,
            disk_bytes: 1 << 40,
            gpus: vec![],
        },
        bandwidth_bps: 10_000_000_000,
        country: country.into(),
        region: "Île-de-France".into(),
        operator: "Example Hosting SAS".into(),
        certs: vec!["SecNumCloud".into(), "ISO27001".into()],
        prices: Prices {
            cpu: price_cpu,
            mem: 4_000,
            disk: 0,
            gpu: 0,
        },
        plugin_apis: vec![],
    }
}

fn q(s: &str) -> Query {
    parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn numbers_with_units() {
    let a = host(1, "FR", 16, 64, 20_000);
    for (query, expect) in [
        ("cpu>=8", true),
        ("cpu>16", false),
        ("cpu=16", true),
        ("cpu!=16", false),
        ("cpu<=0.5", false),
        ("mem>=32GiB", true),
        ("mem>=65GiB", false),
        ("mem<70G", true),
        ("disk>=1TiB", true),
        ("price.cpu<=0.02", true),
        ("price.cpu<0.02", false),
        ("price.mem=0.004", true),
        ("bandwidth>=10G", true),
        ("bandwidth>10G", false),
        ("gpu.count=0", true),
        ("gpu.count>=1", false),
        ("age<5s", true),
        ("age>2s", false),
        ("", true),
    ] {
        assert_eq!(q(query).matches(&a, NOW), expect, "{query}");
    }
}

#[test]
fn text_lists_and_gpus() {
    let mut a = host(1, "FR", 16, 64, 0);
    a.free.gpus = vec![
        Gpu {
            model: "NVIDIA H100 80GB HBM3".into(),
            mem_bytes: 80 << 30,
        },
        Gpu {
            model: "NVIDIA L4".into(),
            mem_bytes: 24 << 30,
        },
    ];
    for (query, expect) in [
        ("country=FR", true),
        ("country=fr", true),
        ("country!=FR", false),
        ("country=DE", false),
        ("region=île-de-france", true),
        ("region~france", true),
        (r#"operator="Example Hosting SAS""#, true),
        ("operator~hosting", true),
        ("operator~*SAS", true),
        ("operator~Ex?mple*", true),
        ("operator~*GmbH", false),
        ("cert=SecNumCloud", true),
        ("cert=secnumcloud", true),
        ("cert!=SecNumCloud", false),
        ("cert!=C5", true),
        ("cert~iso*", true),
        ("gpu.model~H100", true),
        ("gpu.model~A100", false),
        (r#"gpu.model!="NVIDIA L4""#, false),
        (r#"gpu.model!="NVIDIA A100""#, true),
        ("gpu.mem>=80GiB", true),
        ("gpu.mem>80GiB", false),
        ("gpu.count=2", true),
    ] {
        assert_eq!(q(query).matches(&a, NOW), expect, "{query}");
    }
}

#[test]
fn ingress_matches_hosts_announcing_the_http_api() {
    let mut a = host(1, "FR", 8, 32, 20_000);
    assert!(q("ingress=false").matches(&a, NOW));
    assert!(!q("ingress=true").matches(&a, NOW));
    a.plugin_apis
        .push(crate::capacity::query::HTTP_API.to_owned());
    assert!(q("ingress=true").matches(&a, NOW));
    assert!(q("ingress!=false cpu>=4").matches(&a, NOW));
    assert!(!q("ingress=no").matches(&a, NOW));
    for bad in ["ingress=maybe", "ingress>0", "ingress~t"] {
        assert!(parse(bad).is_err(), "{bad} must not parse");
    }
}

#[test]
fn errors_point_at_the_token() {
    let cases = [
        ("cpus>=8 mem>=32GiB", 0, "unknown field"),
        ("cpu>=8 mem>=32GiX", 12, "bad value"),
        ("cpu>=8 country~", 15, "missing value"),
        ("cpu~8", 3, "does not apply"),
        ("country<FR", 7, "does not apply"),
        ("cpu 8", 3, "expected an operator"),
        ("cpu>=8 =3", 7, "expected a field"),
        (r#"operator="Example"#, 9, "unterminated quote"),
        ("price.cpu<=abc", 11, "bad value"),
        ("age<5 minutes", 6, "unknown field"),
    ];
    for (input, position, needle) in cases {
        let e = parse(input)
            .err()
            .unwrap_or_else(|| panic!("{input} should fail"));
        assert_eq!(e.position, position, "{input}: {e}");
        assert!(e.message.contains(needle), "{input}: {}", e.message);
        assert!(e.to_string().contains('^'), "a caret line: {e}");
    }
    assert!(parse(&"cpu>=1 ".repeat(65)).is_err(), "clause cap");
    assert!(parse(&"x".repeat(MAX_QUERY_LEN + 1)).is_err(), "length cap");
}

#[test]
fn explain_names_first_failing_clause_and_actual_value() {
    let a = host(1, "DE", 4, 16, 0);
    let f = q("cpu>=2 country=FR mem>=32GiB").first_failure(&a, NOW);
    assert_eq!(
        f,
        Some(Failure {
            clause: "country=FR".into(),
            actual: "DE".into()
        })
    );
    let f = q("mem>=32GiB").first_failure(&a, NOW);
    assert_eq!(f.map(|f| f.actual), Some("16GiB".into()));
    let f = q("cpu>=8").first_failure(&a, NOW);
    assert_eq!(f.map(|f| f.actual), Some("4 cores".into()));
    let f = q("gpu.model~H100").first_failure(&a, NOW);
    assert_eq!(f.map(|f| f.actual), Some("none".into()));
}

#[test]
fn find_sorts_by_slice_price_then_freshness_and_limits() {
    let adverts = [
        host(1, "FR", 16, 64, 30_000),
        host(2, "FR", 16, 64, 10_000),
        host(3, "FR", 16, 64, 10_000),
        host(4, "DE", 16, 64, 1_000),
    ];
    let query = q("cpu>=8 country=FR");
    let labels: Vec<String> = adverts.iter().map(|a| hex::encode(a.host)).collect();
    let items = || adverts.iter().zip(labels.iter().map(String::as_str));
    let r = find(&query, "cpu>=8 country=FR", items(), NOW, None, true);
    let order: Vec<String> = r.matches.iter().map(|m| m.host.clone()).collect();
    // Hosts 2 and 3 cost the same; 2 was issued later (fresher), so it comes first.
    assert_eq!(
        order,
        vec![
            hex::encode([2u8; 32]),
            hex::encode([3u8; 32]),
            hex::encode([1u8; 32])
        ]
    );
    assert!(
        (r.matches[0].slice_price_eur - 0.08).abs() < 1e-9,
        "8 cores × 0.01"
    );
    assert_eq!(r.not_matching.len(), 1);
    assert_eq!(r.not_matching[0].clause, "country=FR");
    assert_eq!(r.hosts_considered, 4);
    let limited = find(&query, "", items(), NOW, Some(1), false);
    assert_eq!(limited.matches.len(), 1);
    assert!(
        limited.not_matching.is_empty(),
        "no explanation unless asked"
    );
}

fn arb_clause() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            0u32..64,
            prop_oneof![
                Just(">="),
                Just("<="),
                Just("="),
                Just("!="),
                Just(">"),
                Just("<")
            ]
        )
            .prop_map(|(n, op)| format!("cpu{op}{n}")),
        (0u64..256).prop_map(|g| format!("mem>={g}GiB")),
        prop_oneof![Just("FR"), Just("DE"), Just("NL")].prop_map(|c| format!("country={c}")),
        prop_oneof![Just("SecNumCloud"), Just("C5")].prop_map(|c| format!("cert!={c}")),
        (0u64..100).prop_map(|p| format!("price.cpu<=0.{p:02}")),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(s in ".{0,200}") {
        let _ = parse(&s);
    }

    #[test]
    fn matches_iff_no_failure(clauses in prop::collection::vec(arb_clause(), 0..6), cpu in 0u64..64, mem in 0u64..256, fr in any::<bool>()) {
        let text = clauses.join(" ");
        let query = q(&text);
        let a = host(1, if fr { "FR" } else { "DE" }, cpu, mem, 20_000);
        prop_assert_eq!(query.matches(&a, NOW), query.first_failure(&a, NOW).is_none());
        // Re-parsing the same text gives the same answer.
        prop_assert_eq!(q(&text).matches(&a, NOW), query.matches(&a, NOW));
    }
}
