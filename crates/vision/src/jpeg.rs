//! JPEG: the checks made before decoding (the file is complete, its scans are few) and the
//! decoding itself with libjpeg-turbo, through the `mozjpeg` crate.
//!
//! Why libjpeg-turbo: it is what Pillow decodes JPEGs with, and the reference thrum's
//! pre-processing is held to is Pillow's. Its defaults (the "islow" integer IDCT, "fancy"
//! triangular chroma upsampling, block smoothing of progressive scans) give Pillow's pixels
//! exactly; `zune-jpeg` rounds its IDCT and upsampling differently, up to 6 levels on 10–17 %
//! of a 4:2:0 photograph's values. The SIMD kernels need `nasm` when thrum is built; without it
//! the same library runs its C code (the same pixels, about half the speed).

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

/// The number of scans of a JPEG whose entropy-coded data reaches its end-of-image marker, or
/// `None` for a truncated one. Decoders fill a truncated scan with gray and say nothing;
/// Pillow refuses such a file ("image file is truncated"), and so does thrum. The marker
/// segments are walked from the start (an EXIF thumbnail sits inside APP1 and is skipped with
/// it), and each scan's data up to its next marker (0xFF is stuffed as 0xFF00 inside it,
/// restart markers are part of it), so whatever follows the image's end (a phone's
/// motion-photo video) is never read.
pub(crate) fn scans(bytes: &[u8]) -> Option<usize> {
    let mut scans = 0;
    let mut at = 2; // after SOI
    while at + 1 < bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        let marker = bytes[at + 1];
        match marker {
            0xD9 => return Some(scans),
            0xFF => at += 1, // fill byte
            0x01 | 0xD0..=0xD7 => at += 2,
            _ => {
                let len = bytes.get(at + 2..at + 4)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                at += 2 + len;
                if marker == 0xDA {
                    scans += 1;
                    // Entropy-coded data: up to the next marker that is not a stuffed 0xFF00
                    // or a restart marker.
                    loop {
                        let &byte = bytes.get(at)?;
                        if byte == 0xFF {
                            match bytes.get(at + 1)? {
                                0x00 | 0xD0..=0xD7 => at += 2,
                                _ => break,
                            }
                        } else {
                            at += 1;
                        }
                    }
                }
            }
        }
    }
    None
}

/// Decodes a JPEG into RGB with libjpeg-turbo's defaults, as Pillow does, if its colour space
/// is one Pillow turns into RGB through libjpeg (YCbCr, grayscale, RGB); `Ok(None)` for CMYK
/// and YCCK, which Pillow converts itself and the caller leaves to the `image` crate. The
/// caller has checked that the file is complete and within the pixel limit. An error is
/// libjpeg's message.
pub(crate) fn decode_rgb(bytes: &[u8]) -> Result<Option<RgbImage>, String> {
    let run = || -> io::Result<Option<RgbImage>> {
        use mozjpeg::ColorSpace as C;
        let jpeg = mozjpeg::Decompress::new_mem(bytes)?;
        if !matches!(jpeg.color_space(), C::JCS_YCbCr | C::JCS_GRAYSCALE | C::JCS_RGB) {
            return Ok(None);
        }
        let mut started = jpeg.rgb()?;
        let (width, height) = (started.width(), started.height());
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        let rows = pixels.len() / (width * 3).max(1);
        let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else {
            return Err(io::Error::other(format!("a frame of {width} × {height} pixels")));
        };
        RgbImage::from_raw(w, h, pixels)
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
        assert_eq!(scans(&jpeg(&[0xFF, 0xD9])), Some(1));
        // A motion photo: a video after the image's end, with scan-like bytes in it.
        let mut motion = jpeg(&[0xFF, 0xD9]);
        motion.extend([0x00, 0xFF, 0xDA, 0x00, 0x10, 0x77, 0x88]);
        assert_eq!(scans(&motion), Some(1));
        // Cut inside the scan, inside a segment, or right after a marker byte.
        assert_eq!(scans(&jpeg(&[])), None);
        assert_eq!(scans(&jpeg(&[0xFF])), None);
        assert_eq!(scans(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]), None);
        // An EOI inside APP1 (a thumbnail) is skipped with its segment.
        let mut thumb = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0xFF, 0xD9];
        thumb.extend([0xFF, 0xDA, 0x00, 0x02, 0x11]);
        assert_eq!(scans(&thumb), None);
    }

    #[test]
    fn every_scan_is_counted() {
        let mut many = jpeg(&[]);
        for _ in 0..150 {
            many.extend([0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12, 0x34]);
        }
        many.extend([0xFF, 0xD9]);
        assert_eq!(scans(&many), Some(151));
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
        assert!(scans(&bytes).is_some_and(|n| (1..=MAX_SCANS).contains(&n)));
        let image = decode_rgb(&bytes).unwrap().unwrap();
        assert_eq!(image.dimensions(), (w as u32, h as u32));
        let worst = image.as_raw().iter().zip(&source).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst < 24, "{worst}");
    }

    /// libjpeg's fatal errors come back as errors that name the problem, never a panic.
    #[test]
    fn a_corrupt_header_is_an_error() {
        // An SOF0 segment two bytes long: no room for the frame it must describe.
        let bytes = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xD9];
        let err = decode_rgb(&bytes).unwrap_err();
        assert!(err.starts_with("libjpeg-turbo: "), "{err}");
    }
}
