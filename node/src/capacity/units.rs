//! Quantities as people write them: sizes (`64GiB`, `500M`), counts (`8`, `10G`), durations
//! (`30s`, `1h30m`), prices in euros (`0.02`), and back.
//!
//! SI suffixes (`k M G T`, optionally with `B`) are powers of 1000; binary ones (`KiB MiB GiB
//! TiB`) powers of 1024. Decimal values are allowed (`1.5GiB`). Every parser refuses negative
//! values, overflow, and inputs longer than [`MAX_INPUT`] bytes.

/// Longest quantity accepted, in bytes.
pub(crate) const MAX_INPUT: usize = 64;

/// A quantity that does not parse; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not {expected}")]
pub(crate) struct UnitError {
    input: String,
    expected: &'static str,
}

fn err(input: &str, expected: &'static str) -> UnitError {
    UnitError {
        input: input.chars().take(MAX_INPUT).collect(),
        expected,
    }
}

/// Splits `12.5GiB` into (`12.5`, `GiB`).
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

fn parse_decimal(num: &str) -> Option<f64> {
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// A size in bytes: `64GiB`, `500M`, `2TB`, `1.5GiB`, `4096` (bytes).
pub(crate) fn parse_size(s: &str) -> Result<u64, UnitError> {
    const EXPECTED: &str = "a size such as 64GiB, 500M or 2TiB";
    let t = s.trim();
    if t.len() > MAX_INPUT {
        return Err(err(s, EXPECTED));
    }
    let (num, unit) = split_number(t);
    let value = parse_decimal(num).ok_or_else(|| err(s, EXPECTED))?;
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "pib" | "pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err(s, EXPECTED)),
    };
    let bytes = (value * factor).round();
    if bytes > u64::MAX as f64 {
        return Err(err(s, EXPECTED));
    }
    Ok(bytes as u64)
}

/// A plain count with an optional SI suffix: `8`, `0.5`, `10G` (= 1e10).
pub(crate) fn parse_count(s: &str) -> Result<f64, UnitError> {
    const EXPECTED: &str = "a number such as 8, 0.5 or 10G";
    let t = s.trim();
    if t.len() > MAX_INPUT {
        return Err(err(s, EXPECTED));
    }
    let (num, unit) = split_number(t);
    let value = parse_decimal(num).ok_or_else(|| err(s, EXPECTED))?;
    let factor = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return Err(err(s, EXPECTED)),
    };
    let v = value * factor;
    if !v.is_finite() || v > 1e18 {
        return Err(err(s, EXPECTED));
    }
    Ok(v)
}

/// A duration in milliseconds: `500ms`, `30s`, `10m`, `2h`, `1d`, `1h30m`; a bare number is
/// seconds.
pub(crate) fn parse_duration(s: &str) -> Result<u64, UnitError> {
    const EXPECTED: &str = "a duration such as 30s, 10m, 1h30m or 2d";
    let t = s.trim();
    if t.is_empty() || t.len() > MAX_INPUT {
        return Err(err(s, EXPECTED));
    }
    if let Some(secs) = parse_decimal(t) {
        return Ok((secs * 1000.0).round() as u64);
    }
    let mut rest = t;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let (num, after) = split_number(rest);
        let value = parse_decimal(num).ok_or_else(|| err(s, EXPECTED))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let factor = match &after[..unit_len] {
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            "d" => 86_400e3,
            "w" => 7.0 * 86_400e3,
            _ => return Err(err(s, EXPECTED)),
        };
        total += value * factor;
        rest = &after[unit_len..];
    }
    if total > u64::MAX as f64 / 2.0 {
        return Err(err(s, EXPECTED));
    }
    Ok(total.round() as u64)
}

/// Euros with at most six decimals, as micro-euros: `0.02` → 20000.
pub(crate) fn parse_price_eur(s: &str) -> Result<u64, UnitError> {
    const EXPECTED: &str = "a price in euros such as 0.02 or 2.5 (at most 6 decimals)";
    let t = s
        .trim()
        .trim_end_matches("EUR")
        .trim_end_matches('€')
        .trim();
    if t.is_empty() || t.len() > MAX_INPUT {
        return Err(err(s, EXPECTED));
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
    {
        return Err(err(s, EXPECTED));
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| err(s, EXPECTED))?
    };
    let mut micros_str = frac.to_owned();
    while micros_str.len() < 6 {
        micros_str.push('0');
    }
    let micros: u64 = micros_str.parse().map_err(|_| err(s, EXPECTED))?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(micros))
        .ok_or_else(|| err(s, EXPECTED))
}

fn trim_float(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// `68719476736` → `64GiB`: the largest binary unit, with at most two decimals.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size {
            return format!("{}{name}", trim_float(bytes as f64 / size as f64, 2));
        }
    }
    format!("{bytes}B")
}

/// Micro-euros as euros: `20000` → `0.02`.
pub(crate) fn format_eur(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let frac = micros % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:06}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// Milliseconds as `1h2m3s`, `250ms`.
pub(crate) fn format_duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if secs > 0 || out.is_empty() {
        out.push_str(&format!("{secs}s"));
    }
    out
}

/// Bits per second with an SI suffix: `10000000000` → `10G`.
pub(crate) fn format_bps(bps: u64) -> String {
    for (name, size) in [("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)] {
        if bps as f64 >= size {
            return format!("{}{name}", trim_float(bps as f64 / size, 2));
        }
    }
    bps.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64GiB"), Ok(64 << 30));
        assert_eq!(parse_size("64gib"), Ok(64 << 30));
        assert_eq!(parse_size("500M"), Ok(500_000_000));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in [
            "",
            "GiB",
            "-1G",
            "12XB",
            "1e3",
            "99999999999999999999TiB",
            "1..5G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(64 << 30), "64GiB");
        assert_eq!(format_size(3 << 29), "1.5GiB");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn counts_durations_prices() {
        assert_eq!(parse_count("8"), Ok(8.0));
        assert_eq!(parse_count("0.5"), Ok(0.5));
        assert_eq!(parse_count("10G"), Ok(1e10));
        assert!(parse_count("ten").is_err());
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("90"), Ok(90_000));
        assert!(parse_duration("5 minutes").is_err());
        assert_eq!(parse_price_eur("0.02"), Ok(20_000));
        assert_eq!(parse_price_eur("2.5"), Ok(2_500_000));
        assert_eq!(parse_price_eur("3"), Ok(3_000_000));
        assert!(parse_price_eur("0.0000001").is_err());
        assert!(parse_price_eur("-1").is_err());
        assert_eq!(format_eur(20_000), "0.02");
        assert_eq!(format_eur(2_500_000), "2.5");
        assert_eq!(format_duration(5_400_000), "1h30m");
        assert_eq!(format_bps(10_000_000_000), "10G");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,80}") {
            let _ = parse_size(&s);
            let _ = parse_count(&s);
            let _ = parse_duration(&s);
            let _ = parse_price_eur(&s);
        }

        #[test]
        fn sizes_round_trip(gib in 0u64..1024, bytes in 0u64..(1u64 << 50)) {
            prop_assert_eq!(parse_size(&format_size(gib << 30)), Ok(gib << 30));
            // Two decimals: within 0.5 % of the original.
            let back = parse_size(&format_size(bytes)).unwrap_or(0) as f64;
            prop_assert!((back - bytes as f64).abs() <= bytes as f64 * 0.005 + 1.0);
        }

        #[test]
        fn prices_round_trip(micros in 0u64..1_000_000_000_000) {
            prop_assert_eq!(parse_price_eur(&format_eur(micros)), Ok(micros));
        }
    }
}
