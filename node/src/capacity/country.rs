//! ISO 3166-1 alpha-2 country codes: the 249 officially assigned ones (Debian's iso-codes,
//! identical to tzdata's `iso3166.tab`). User-assigned codes such as `XK`, `ZZ` or `EU`, and
//! non-codes such as `UK`, are refused: adverts are filtered on this field, so it must mean one
//! thing everywhere.

/// The assigned codes, sorted (binary search).
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

/// Whether `code` is an assigned ISO 3166-1 alpha-2 code (upper case, exact).
pub fn is_iso_alpha2(code: &str) -> bool {
    CODES.binary_search(&code).is_ok()
}

/// Trims and upper-cases `input` and checks it, with an error that says what is expected.
pub fn normalize_country(input: &str) -> Result<String, String> {
    let code = input.trim().to_ascii_uppercase();
    if is_iso_alpha2(&code) {
        Ok(code)
    } else {
        Err(format!(
            "`{}` is not an ISO 3166-1 alpha-2 country code (e.g. FR, DE, NL)",
            input.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_codes_only() {
        assert!(
            CODES.windows(2).all(|w| w[0] < w[1]),
            "sorted for binary search"
        );
        for ok in ["FR", "DE", "US", "GB", "CH", "NO", "AX", "EH", "SS"] {
            assert!(is_iso_alpha2(ok), "{ok}");
        }
        for bad in ["XK", "UK", "EU", "ZZ", "fr", "F", "FRA", ""] {
            assert!(!is_iso_alpha2(bad), "{bad}");
        }
        assert_eq!(normalize_country(" fr "), Ok("FR".to_owned()));
        assert!(normalize_country("UK").is_err_and(|e| e.contains("ISO 3166-1")));
    }
}
