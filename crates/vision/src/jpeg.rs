//! JPEG: the checks made before decoding (the file is complete, its scans are few) and the
//! decoding itself with libjpeg-turbo, through the `mozjpeg` crate.
//!
//! Why libjpeg-turbo: it is what Pillow decodes JPEGs with, and the reference thrum's
//! pre-processing is held to is Pillow's. (`mozjpeg-sys` builds MozJPEG's copy of it, a 2.x
//! base where Pillow's wheels carry 3.x; the decoding paths used here are the same, and the
//! tests compare the pixels with Pillow's.) Its defaults (the "islow" integer IDCT, "fancy"
//! triangular chroma upsampling, block smoothing of progressive scans) give Pillow's pixels
//! exactly; `zune-jpeg` rounds its IDCT and upsampling differently, up to 6 levels on 10–17 %
//! of a 4:2:0 photograph's values. The SIMD kernels need `nasm` when thrum is built; without it
//! the same library runs its C code (the same pixels, about half the speed). A target
//! directory built without `nasm` keeps the C code until `cargo clean -p mozjpeg-sys`.

use std::io;

use image::RgbImage;

// libjpeg reports a fatal error by unwinding out of its callback (the `mozjpeg` crate's error
// manager); `decode_rgb` catches it. With `panic = "abort"` a corrupt JPEG would end the
// process instead.
#[cfg(panic = "abort")]
compile_error!(
    "thrum-vision decodes JPEGs with libjpeg, whose errors unwind: build with panic = \"unwind\""
);

/// Most scans a JPEG may have. Each scan of a progressive JPEG is a pass over the whole image,
/// so a small file of thousands of scans costs seconds of CPU; encoders write about 10.
/// (`zune-jpeg`'s limit, which thrum used before.)
pub(crate) const MAX_SCANS: usize = 100;

/// The number of scans of a JPEG, read from its markers as libjpeg reads them, or what was
/// wrong with them (the `expected` half of an error).
///
/// Refused: a truncated file (no end-of-image marker after its last scan: decoders fill the
/// rest with gray and say nothing; Pillow refuses such a file, "image file is truncated", and
/// so does thrum), bytes between segments that are not a marker, a stuffed `0xFF00` or a
/// reserved code (0x02–0xBF) where a marker must be, and a segment length under 2. libjpeg
/// skips such bytes (with a warning thrum does not see), so a file could hide scans behind
/// them from a counter that read them otherwise. The segments are walked from the start (an
/// EXIF thumbnail sits inside APP1 and is skipped with it); a marker may be preceded by any
/// number of 0xFF fill bytes; each scan's data runs to its next marker (0xFF, fill bytes, then
/// 0x00 is a data byte; restart markers are part of the scan), so whatever follows the
/// image's end (a phone's motion-photo video) is never read.
pub(crate) fn scans(bytes: &[u8]) -> Result<usize, String> {
    let truncated = || {
        "a complete JPEG: its last scan has no end-of-image marker (the file is truncated)"
            .to_string()
    };
    let mut scans = 0;
    let mut at = 2; // after SOI
    loop {
        match bytes.get(at) {
            None => return Err(truncated()),
            Some(0xFF) => {}
            Some(byte) => {
                return Err(format!(
                    "a marker at byte {at}, not 0x{byte:02x} (bytes between a JPEG's segments \
                     are refused)"
                ));
            }
        }
        while bytes.get(at + 1) == Some(&0xFF) {
            at += 1; // fill bytes
        }
        let &code = bytes.get(at + 1).ok_or_else(truncated)?;
        match code {
            0xD9 => return Ok(scans),
            0x01 | 0xD0..=0xD7 => at += 2, // markers without a segment
            0x00 | 0x02..=0xBF => {
                return Err(format!("a marker at byte {at}, not the reserved code 0x{code:02x}"));
            }
            _ => {
                let len = bytes.get(at + 2..at + 4).ok_or_else(truncated)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len < 2 {
                    return Err(format!(
                        "a segment length of at least 2 (marker 0x{code:02x} at byte {at} says \
                         {len})"
                    ));
                }
                at += 2 + len;
                if code == 0xDA {
                    scans += 1;
                    // Entropy-coded data, up to the next marker.
                    loop {
                        let next_ff =
                            bytes.get(at..).and_then(|rest| rest.iter().position(|&b| b == 0xFF));
                        at += next_ff.ok_or_else(truncated)?;
                        let mut after = at + 1;
                        while bytes.get(after) == Some(&0xFF) {
                            after += 1;
                        }
                        match bytes.get(after) {
                            None => return Err(truncated()),
                            Some(0x00 | 0xD0..=0xD7) => at = after + 1,
                            Some(_) => {
                                at = after - 1; // the marker's last 0xFF
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Decodes a JPEG into RGB with libjpeg-turbo's defaults, as Pillow does, if its colour space
/// is one Pillow turns into RGB through libjpeg (YCbCr, grayscale, RGB); `Ok(None)` for CMYK
/// and YCCK, which Pillow converts itself and the caller leaves to the `image` crate. The
/// caller has checked the file's markers ([`scans`]) and that `size`, the frame's width and
/// height as the `image` crate read them, is within the pixel limit; a frame of another size
/// is refused. An error is libjpeg's message.
pub(crate) fn decode_rgb(bytes: &[u8], size: (u32, u32)) -> Result<Option<RgbImage>, String> {
    let run = || -> io::Result<Option<RgbImage>> {
        use mozjpeg::ColorSpace as C;
        let jpeg = mozjpeg::Decompress::new_mem(bytes)?;
        // The pixel limit was checked on the size the `image` crate read. A file built so that
        // two parsers find different frames must not get past it: libjpeg's frame is that
        // size, or the file is refused before libjpeg allocates anything for its pixels.
        let (width, height) = jpeg.size();
        if (width, height) != (size.0 as usize, size.1 as usize) {
            return Err(io::Error::other(format!(
                "its frame is {width} × {height} pixels to libjpeg but {} × {} in its header as \
                 first read",
                size.0, size.1
            )));
        }
        if !matches!(jpeg.color_space(), C::JCS_YCbCr | C::JCS_GRAYSCALE | C::JCS_RGB) {
            return Ok(None);
        }
        let mut started = jpeg.rgb()?;
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        let rows = pixels.len() / (width * 3).max(1);
        RgbImage::from_raw(size.0, size.1, pixels)
            .map(Some)
            .ok_or_else(|| io::Error::other(format!("{rows} of the frame's {height} rows decoded")))
    };
    match std::panic::catch_unwind(run) {
        Ok(Ok(image)) => Ok(image),
        Ok(Err(e)) => Err(format!("libjpeg-turbo: {e}")),
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a fatal error");
            Err(message.replace("libjpeg fatal error: ", "libjpeg-turbo: "))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// SOI, an APP0 segment, a scan header, entropy-coded data with a stuffed 0xFF00 and a
    /// restart marker, then `end`.
    fn jpeg(end: &[u8]) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46];
        b.extend([0xFF, 0xDA, 0x00, 0x03, 0x01]);
        b.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        b.extend_from_slice(end);
        b
    }

    #[test]
    fn a_jpeg_is_complete_when_its_scan_reaches_the_end_marker() {
        assert_eq!(scans(&jpeg(&[0xFF, 0xD9])), Ok(1));
        // Fill bytes before a marker, and inside the scan before a stuffed zero (a data byte).
        assert_eq!(scans(&jpeg(&[0xFF, 0xFF, 0x00, 0x77, 0xFF, 0xFF, 0xFF, 0xD9])), Ok(1));
        // A motion photo: a video after the image's end, with scan-like bytes in it.
        let mut motion = jpeg(&[0xFF, 0xD9]);
        motion.extend([0x00, 0xFF, 0xDA, 0x00, 0x10, 0x77, 0x88]);
        assert_eq!(scans(&motion), Ok(1));
        // Cut inside the scan, inside a segment, or right after a marker byte.
        let truncated = |bytes: &[u8]| scans(bytes).unwrap_err().contains("truncated");
        assert!(truncated(&jpeg(&[])));
        assert!(truncated(&jpeg(&[0xFF])));
        assert!(truncated(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]));
        // An EOI inside APP1 (a thumbnail) is skipped with its segment.
        let mut thumb = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0xFF, 0xD9];
        thumb.extend([0xFF, 0xDA, 0x00, 0x02, 0x11]);
        assert!(truncated(&thumb));
    }

    #[test]
    fn every_scan_is_counted() {
        let mut many = jpeg(&[]);
        for _ in 0..150 {
            many.extend([0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12, 0x34]);
        }
        many.extend([0xFF, 0xD9]);
        assert_eq!(scans(&many), Ok(151));
    }

    /// What libjpeg skips where a marker must be (a stuffed zero, a reserved code, stray
    /// bytes) could hide scans from a counter that read it as a segment: refused.
    #[test]
    fn bytes_that_could_hide_scans_are_refused() {
        // SOI, APP0, then `gap` where a marker must be, and a scan inside what a careless
        // counter would skip as a 7-byte segment.
        let with = |gap: &[u8]| {
            let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46];
            bytes.extend_from_slice(gap);
            bytes.extend([0x00, 0x07, 0xFF, 0xDA, 0x00, 0x03, 0x01, 0xFF, 0xD9]);
            scans(&bytes).unwrap_err()
        };
        assert!(with(&[0xFF, 0x00]).contains("reserved code 0x00"));
        assert!(with(&[0xFF, 0xFF, 0x00]).contains("reserved code 0x00"));
        assert!(with(&[0xFF, 0x4F]).contains("reserved code 0x4f"));
        assert!(with(&[0x99]).contains("not 0x99"));
        assert!(with(&[0xFF, 0xFE, 0x00, 0x01]).contains("at least 2"));
    }

    /// A 4:2:0 JPEG made by libjpeg's encoder decodes to its size and close to its colours.
    #[test]
    fn a_4_2_0_jpeg_decodes_to_rgb() {
        let (w, h) = (37usize, 21usize);
        let source: Vec<u8> =
            (0..w * h).flat_map(|i| [(i % w * 6) as u8, (i / w * 12) as u8, 128]).collect();
        let mut encoder = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        encoder.set_size(w, h);
        encoder.set_quality(95.0);
        let mut encoder = encoder.start_compress(Vec::new()).unwrap();
        encoder.write_scanlines(&source).unwrap();
        let bytes = encoder.finish().unwrap();
        assert!(scans(&bytes).is_ok_and(|n| (1..=MAX_SCANS).contains(&n)));
        let image = decode_rgb(&bytes, (w as u32, h as u32)).unwrap().unwrap();
        assert_eq!(image.dimensions(), (w as u32, h as u32));
        let worst = image.as_raw().iter().zip(&source).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst < 24, "{worst}");
        // A frame of another size than the one the pixel limit was checked on is refused.
        let err = decode_rgb(&bytes, (w as u32, 5)).unwrap_err();
        assert!(err.contains("37 × 21 pixels to libjpeg but 37 × 5"), "{err}");
    }

    /// libjpeg's fatal errors come back as errors that name the problem, never a panic.
    #[test]
    fn a_corrupt_header_is_an_error() {
        // An SOF0 segment two bytes long: no room for the frame it must describe.
        let bytes = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xD9];
        let err = decode_rgb(&bytes, (1, 1)).unwrap_err();
        assert!(err.starts_with("libjpeg-turbo: "), "{err}");
    }
}
