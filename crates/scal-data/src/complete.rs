//! Whether an image file holds all of its data. `image`'s JPEG decoder (zune-jpeg in its
//! lenient mode) fills the rows missing from a file cut off in its scan data with grey and
//! returns success; PIL, which ReID users' code relies on, raises "image file is truncated"
//! for the same file. The check below gives the same verdict for JPEG without a second
//! decode: zune-jpeg's strict mode would also reject benign anomalies that PIL accepts (a few
//! extra bytes before a marker), and no crate reports truncation alone.

/// Whether JPEG data reaches its end-of-image marker: the segments from SOI on (ITU-T T.81,
/// B.1), with the entropy-coded data after each start-of-scan read up to the next marker
/// that is neither byte stuffing (`FF 00`) nor a restart (`FF D0`–`FF D7`). Data after the
/// end-of-image marker is ignored, as decoders do.
pub(crate) fn jpeg_is_complete(data: &[u8]) -> bool {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    loop {
        // Skip anything up to the next marker prefix, then the fill bytes.
        let Some(at) = data[i..].iter().position(|&b| b == 0xFF) else {
            return false;
        };
        i += at;
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = data.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,
            // Standalone markers: restarts, TEM, SOI, stray stuffing.
            0xD0..=0xD8 | 0x01 | 0x00 => continue,
            _ => {}
        }
        let Some(len) = data
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        else {
            return false;
        };
        if len < 2 || i + len > data.len() {
            return false;
        }
        i += len;
        if marker == 0xDA {
            match end_of_scan(data, i) {
                Some(next) => i = next,
                None => return false,
            }
        }
    }
}

/// The position of the marker that ends the entropy-coded data starting at `start`, or
/// `None` when the data ends first.
fn end_of_scan(data: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        i += data[i..].iter().position(|&b| b == 0xFF)?;
        match *data.get(i + 1)? {
            0x00 | 0xD0..=0xD7 => i += 2,
            0xFF => i += 1,
            _ => return Some(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal JPEG-shaped stream: SOI, a segment, SOS with entropy data holding stuffing
    /// and a restart, EOI, then trailing bytes.
    fn stream() -> Vec<u8> {
        let mut s = vec![0xFF, 0xD8];
        s.extend([0xFF, 0xE0, 0x00, 0x04, 0xAB, 0xCD]);
        s.extend([0xFF, 0xDA, 0x00, 0x03, 0x01]);
        s.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        s.extend([0xFF, 0xD9]);
        s.extend([0x00, 0x11]);
        s
    }

    #[test]
    fn a_whole_stream_is_complete_and_every_cut_before_its_end_is_not() {
        let s = stream();
        assert!(jpeg_is_complete(&s));
        let eoi = s.len() - 4; // where FF D9 starts, before the two trailing bytes
        for cut in 0..eoi + 2 {
            assert!(!jpeg_is_complete(&s[..cut]), "cut at {cut}");
        }
        assert!(
            jpeg_is_complete(&s[..eoi + 2]),
            "trailing bytes are not needed"
        );
        assert!(!jpeg_is_complete(b"GIF89a"));
    }
}
