//! Text helpers every layer may use: the NUL-padded names of the maps, MAC addresses.

/// `text` NUL-padded (cut) to 16 bytes, as the agent map stores names.
pub fn padded(text: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let len = text.len().min(bytes.len());
    bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
    bytes
}

/// The text of a NUL-padded field.
pub fn unpadded(bytes: &[u8; 16]) -> String {
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_names_round_trip_and_are_cut_at_16_bytes() {
        assert_eq!(unpadded(&padded("cali")), "cali");
        assert_eq!(unpadded(&padded("0.1.0")), "0.1.0");
        assert_eq!(unpadded(&padded("a-name-of-twenty-bytes")), "a-name-of-twenty");
    }

    #[test]
    fn macs_are_lowercase_hex_with_colons() {
        assert_eq!(mac_string([0x86, 0x79, 0x13, 0x2b, 0x26, 0x1d]), "86:79:13:2b:26:1d");
    }
}
