//! ISO 3166-1 alpha-2 country codes.
//!
//! Adverts are filtered on their country, so the field must mean one thing on every node: only
//! the 249 *officially assigned* alpha-2 codes are accepted. The list is the one published by
//! Debian's `iso-codes` (`iso_3166-1.json`), which is identical to tzdata's `iso3166.tab`; both
//! were checked against each other when the table was written.
//!
//! Refused on purpose:
//! - user-assigned codes (`AA`, `QM`–`QZ`, `XA`–`XZ`, `ZZ`), among them `XK` (Kosovo, used by
//!   some registries but not assigned by ISO);
//! - exceptionally or transitionally reserved codes such as `UK` (use `GB`) and `EU`;
//! - anything that is not exactly two upper-case ASCII letters ([`normalize_country`] is the
//!   lenient entry point for human input).
//!
//! The table is a sorted `const` array searched with [`slice::binary_search`]: no allocation,
//! no lazy initialisation, and a test checks that it stays sorted and complete.

/// The officially assigned ISO 3166-1 alpha-2 codes, sorted for binary search.
const CODES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `code` is an officially assigned ISO 3166-1 alpha-2 code.
///
/// The match is exact: upper case, no surrounding whitespace (`"FR"` yes, `"fr"` or `" FR"`
/// no). Use [`normalize_country`] for input typed by a person.
pub(crate) fn is_iso_alpha2(code: &str) -> bool {
    CODES.binary_search(&code).is_ok()
}

/// Longest piece of rejected input quoted back in an error message.
const MAX_QUOTED: usize = 32;

/// Trims and upper-cases `input` (ASCII only, so `ß` does not turn into `SS`) and checks that
/// the result is an assigned ISO 3166-1 alpha-2 code.
///
/// # Errors
///
/// A message fit for a person, quoting the (trimmed, shortened) input, e.g.
/// ``"`XX` is not an ISO 3166-1 alpha-2 country code (e.g. FR, DE, NL)"``.
pub(crate) fn normalize_country(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    let code = trimmed.to_ascii_uppercase();
    if is_iso_alpha2(&code) {
        return Ok(code);
    }
    let mut quoted: String = trimmed.chars().take(MAX_QUOTED).collect();
    if trimmed.chars().nth(MAX_QUOTED).is_some() {
        quoted.push('…');
    }
    Err(format!(
        "`{quoted}` is not an ISO 3166-1 alpha-2 country code (e.g. FR, DE, NL)"
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        assert!(
            CODES.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(
            CODES
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn every_code_in_the_table_is_found() {
        for code in CODES {
            assert!(is_iso_alpha2(code), "{code}");
        }
    }

    #[test]
    fn assigned_codes_are_accepted() {
        for ok in [
            "FR", "DE", "US", "GB", "CH", "NO", "AX", "EH", "SS", "NL", "AD", "ZW", "BQ", "CW",
            "SX", "TL", "PS", "TW", "AQ", "UM",
        ] {
            assert!(is_iso_alpha2(ok), "{ok}");
        }
    }

    #[test]
    fn unassigned_user_assigned_and_malformed_codes_are_refused() {
        for bad in [
            "XK", "UK", "EU", "ZZ", "AA", "QM", "XA", "AN", "YU", "CS", "SU", "fr", "Fr", "F",
            "FRA", "", " FR", "FR ", "F R", "\u{0}FR", "ＦＲ",
        ] {
            assert!(!is_iso_alpha2(bad), "{bad:?}");
        }
    }

    #[test]
    fn normalize_trims_and_upper_cases() {
        assert_eq!(normalize_country(" fr "), Ok("FR".to_owned()));
        assert_eq!(normalize_country("De"), Ok("DE".to_owned()));
        assert_eq!(normalize_country("\tnl\n"), Ok("NL".to_owned()));
        assert_eq!(normalize_country("ax"), Ok("AX".to_owned()));
    }

    #[test]
    fn normalize_explains_refusals() {
        assert_eq!(
            normalize_country("XX"),
            Err("`XX` is not an ISO 3166-1 alpha-2 country code (e.g. FR, DE, NL)".to_owned())
        );
        assert!(normalize_country(" uk ").is_err_and(|e| e.starts_with("`uk` ")));
        assert!(normalize_country("xk").is_err());
        assert!(normalize_country("").is_err_and(|e| e.starts_with("`` ")));
        // Unicode upper-casing would turn `ß` into `SS` (South Sudan).
        assert!(normalize_country("ß").is_err());
        let long = "x".repeat(1000);
        assert!(normalize_country(&long).is_err_and(|e| e.len() < 120 && e.contains('…')));
    }

    proptest! {
        #[test]
        fn normalize_never_panics_and_agrees_with_is_iso_alpha2(s in "\\PC{0,40}") {
            match normalize_country(&s) {
                Ok(code) => {
                    prop_assert!(is_iso_alpha2(&code));
                    prop_assert_eq!(normalize_country(&code), Ok(code.clone()));
                }
                Err(e) => prop_assert!(e.contains("ISO 3166-1")),
            }
        }

        #[test]
        fn accepted_codes_are_two_upper_case_letters(s in "[A-Za-z]{2}") {
            if is_iso_alpha2(&s) {
                prop_assert!(s.bytes().all(|b| b.is_ascii_uppercase()));
            }
            prop_assert_eq!(
                is_iso_alpha2(&s.to_ascii_uppercase()),
                CODES.contains(&s.to_ascii_uppercase().as_str())
            );
        }
    }
}
