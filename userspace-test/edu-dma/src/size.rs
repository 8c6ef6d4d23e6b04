//! Byte sizes as the tools spell them: `4096`, `64K`, `16M`, `1G` (binary multiples).

use std::fmt;
use std::num::IntErrorKind;

/// Why a size did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// No digits before the suffix (empty, `K`, `-1`, `1.5K`, ...).
    BadNumber(String),
    /// A suffix other than `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB`.
    BadSuffix(String),
    /// The number or the number times its multiple does not fit in a `u64`.
    Overflow(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::BadNumber(s) => write!(f, "bad size {s:?} (e.g. 4096, 64K, 16M)"),
            SizeError::BadSuffix(s) => write!(f, "bad size suffix in {s:?} (use K, M or G)"),
            SizeError::Overflow(s) => write!(f, "size {s:?} does not fit in 64 bits"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses `4096`, `64K`, `16M`, `1G`: decimal digits, then an optional case-insensitive suffix
/// `B`, `K`/`KB`/`KiB` (2^10), `M`/`MB`/`MiB` (2^20) or `G`/`GB`/`GiB` (2^30). Surrounding white
/// space is ignored. Usable as a clap `value_parser`.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: u64 = num.parse().map_err(|e: std::num::ParseIntError| {
        if *e.kind() == IntErrorKind::PosOverflow {
            SizeError::Overflow(s.to_string())
        } else {
            SizeError::BadNumber(s.to_string())
        }
    })?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(SizeError::BadSuffix(s.to_string())),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| SizeError::Overflow(s.to_string()))
}

/// The shortest spelling [`parse_size`] reads back: `1`, `4K`, `16M`, `2G` (a size that is not a
/// whole number of KiB stays in bytes).
pub fn format_size(n: u64) -> String {
    for (shift, suffix) in [(30, "G"), (20, "M"), (10, "K")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_suffixed() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1"), Ok(1));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("2kb"), Ok(2048));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("3MiB"), Ok(3 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4gib"), Ok(4 << 30));
        assert_eq!(parse_size(" 8K\n"), Ok(8192));
        assert_eq!(parse_size("007K"), Ok(7 << 10));
    }

    #[test]
    fn bad_numbers() {
        for s in ["", " ", "K", "M", "-1", "+1", "-4K", " K4", "KiB"] {
            assert_eq!(
                parse_size(s),
                Err(SizeError::BadNumber(s.to_string())),
                "{s:?}"
            );
        }
    }

    #[test]
    fn bad_suffixes() {
        for s in [
            "12X", "4KK", "4 K", "1T", "1Mi", "16MB2", "1e3", "5KiBs", "1.5K", "0x10",
        ] {
            assert_eq!(
                parse_size(s),
                Err(SizeError::BadSuffix(s.to_string())),
                "{s:?}"
            );
        }
        let msg = parse_size("12X").unwrap_err().to_string();
        assert!(msg.contains("\"12X\"") && msg.contains("suffix"), "{msg}");
    }

    #[test]
    fn overflow() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("18446744073709551615B"), Ok(u64::MAX));
        for s in [
            "18446744073709551616",
            "99999999999999999999G",
            "18446744073709551615K",
            "17179869184G",
            "17592186044416M",
        ] {
            assert_eq!(
                parse_size(s),
                Err(SizeError::Overflow(s.to_string())),
                "{s:?}"
            );
        }
        // The largest that fits.
        assert_eq!(parse_size("17179869183G"), Ok(17179869183 << 30));
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(256), "256");
        assert_eq!(format_size(1023), "1023");
        assert_eq!(format_size(1024), "1K");
        assert_eq!(format_size(4097), "4097");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(16 << 20), "16M");
        assert_eq!(format_size(2 << 30), "2G");
        assert_eq!(format_size(u64::MAX), u64::MAX.to_string());
        for n in [0, 1, 4, 1000, 4096, 65536 + 13, 16 << 20, 3 << 30, u64::MAX] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
    }
}
