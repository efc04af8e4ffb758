//! Dutch identifiers that ketenpoort validates or looks for.

/// A BSN is 9 digits passing the 11-proef: 9·d1 + 8·d2 + … + 2·d8 − 1·d9 is
/// a multiple of 11 (and not all zeros).
pub fn is_valid_bsn(s: &str) -> bool {
    if s.len() != 9 || !s.bytes().all(|b| b.is_ascii_digit()) || s == "000000000" {
        return false;
    }
    let sum: i64 = s
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let d = i64::from(b - b'0');
            if i == 8 { -d } else { d * (9 - i as i64) }
        })
        .sum();
    sum % 11 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleven_test() {
        // Published test numbers of the BSN 11-proef.
        for ok in ["111222333", "123456782", "999999990"] {
            assert!(is_valid_bsn(ok), "{ok}");
        }
        for bad in [
            "111222334",
            "123456789",
            "12345678",
            "1234567890",
            "12345678a",
            "000000000",
        ] {
            assert!(!is_valid_bsn(bad), "{bad}");
        }
    }
}
