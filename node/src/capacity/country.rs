//! PLACEHOLDER (replaced by the inventory work).
pub fn is_iso_alpha2(code: &str) -> bool {
    code.len() == 2
}
pub fn normalize_country(input: &str) -> Result<String, String> {
    let c = input.trim().to_ascii_uppercase();
    if is_iso_alpha2(&c) {
        Ok(c)
    } else {
        Err(format!(
            "`{input}` is not an ISO 3166-1 alpha-2 country code (e.g. FR, DE, NL)"
        ))
    }
}
