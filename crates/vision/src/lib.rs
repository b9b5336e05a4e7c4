//! # thrum-vision
//!
//! Images in, classes out, in thrum's [`Translator`] API (DJL's `ImageClassificationTranslator`,
//! TorchServe's `image_classifier` handler):
//!
//! - [`decode`]: JPEG, PNG, GIF (first frame) and WebP bytes → RGB, with the EXIF orientation
//!   applied and grayscale, alpha (dropped, as Pillow's `convert("RGB")` does) and CMYK turned
//!   into RGB. The header's size is checked against a pixel limit before anything is allocated
//!   (a 100,000 × 100,000 PNG is refused in microseconds).
//! - [`ImageTransform`]: the shorter side resized with Pillow's antialiased bilinear filter
//!   (`fast_image_resize`'s convolution, which follows Pillow's algorithm), the center crop as
//!   torchvision takes it, then `(x / 255 - mean) / std` per channel, in NCHW or NHWC.
//! - [`ImageClassifier`]: bytes of an image → the model → softmax top-k with labels
//!   ([`Classification`]).
//!
//! Crates: `mozjpeg` decodes JPEGs with libjpeg-turbo, the library Pillow decodes them with
//! (its integer IDCT and "fancy" chroma upsampling, SIMD where `nasm` was found at build time),
//! so the pixels equal Pillow's; `image` reads every header, EXIF orientation, and decodes the
//! other formats (pure Rust: `png`, `gif`, `image-webp`; CMYK JPEGs with `zune-jpeg`) under
//! allocation limits; `fast_image_resize` resizes (SIMD convolution with Pillow's filters and
//! fixed-point arithmetic, so its output matches Pillow's within one level).
#![forbid(unsafe_code)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use fast_image_resize as fir;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use thrum_core::translator::{Batchifier, Translator};
use thrum_core::{Classification, Classifier, DType, Dim, Error, Model, Result, Tensor};

mod jpeg;

/// Pillow's `Image.MAX_IMAGE_PIXELS`: images with more pixels are refused (Pillow warns, then
/// refuses at twice this).
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

const NAME: &str = "image-classifier";

/// Longest side an image may be resized to (before cropping).
pub const MAX_SIDE: u32 = 1 << 16;

fn bad_image(what: &str, expected: impl Into<String>) -> Error {
    Error::InvalidValue { what: "image".into(), value: what.into(), expected: expected.into() }
}

/// The first bytes of a buffer, for an error message.
fn describe(bytes: &[u8]) -> String {
    let head: String = bytes
        .iter()
        .take(8)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    format!("{} bytes starting `{head}`", bytes.len())
}

/// The width and height an encoded image's header states, without decoding it.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    const FORMATS: &str = "a JPEG, PNG, GIF or WebP image";
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad_image(&describe(bytes), format!("{FORMATS} ({e})")))?;
    if reader.format().is_none() {
        return Err(bad_image(
            &describe(bytes),
            format!("{FORMATS}: these bytes have none of their signatures"),
        ));
    }
    reader
        .into_dimensions()
        .map_err(|e| bad_image(&describe(bytes), format!("{FORMATS} with a readable header ({e})")))
}

/// Decodes an encoded image into 8-bit RGB, EXIF orientation applied, refusing more than
/// `max_pixels` pixels before decoding.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    const FORMATS: &str = "a JPEG, PNG, GIF or WebP image";
    if bytes.is_empty() {
        return Err(bad_image("0 bytes", FORMATS));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad_image(&describe(bytes), format!("{FORMATS} ({e})")))?;
    let Some(format) = reader.format() else {
        return Err(bad_image(
            &describe(bytes),
            format!("{FORMATS}: these bytes have none of their signatures"),
        ));
    };
    let supported = matches!(
        format,
        image::ImageFormat::Jpeg
            | image::ImageFormat::Png
            | image::ImageFormat::Gif
            | image::ImageFormat::WebP
    );
    if !supported {
        return Err(bad_image(&format!("a {format:?} image"), FORMATS));
    }
    let name = format!("{format:?}").to_uppercase();
    if format == image::ImageFormat::Jpeg {
        let scans = jpeg::scans(bytes)
            .map_err(|expected| bad_image(&format!("JPEG, {}", describe(bytes)), expected))?;
        if scans > jpeg::MAX_SCANS {
            return Err(bad_image(
                &format!("JPEG of {scans} scans, {}", describe(bytes)),
                format!(
                    "a JPEG of at most {} scans (progressive JPEGs have about 10)",
                    jpeg::MAX_SCANS
                ),
            ));
        }
    }
    let fail = |e: &dyn std::fmt::Display| {
        bad_image(&format!("{name}, {}", describe(bytes)), format!("a valid {name} ({e})"))
    };
    let mut decoder = reader.into_decoder().map_err(|e| fail(&e))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(bad_image(
            &format!("{name} of {width} × {height} pixels"),
            "an image with pixels",
        ));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(bad_image(
            &format!("{name} of {width} × {height} = {pixels} pixels"),
            format!("at most {max_pixels} pixels (the server's limit; refused before decoding)"),
        ));
    }
    // The `image` crate's decoders also keep to an allocation limit (a file whose frames are
    // bigger than its header says); libjpeg's frame must be the size checked above.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(pixels.saturating_mul(16).max(1 << 20));
    decoder.set_limits(limits).map_err(|e| fail(&e))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    // JPEGs in YCbCr, grayscale or RGB are decoded by libjpeg-turbo, as Pillow decodes them
    // (the same pixels); CMYK and YCCK ones, and every other format, by the `image` crate.
    let libjpeg = if format == image::ImageFormat::Jpeg {
        jpeg::decode_rgb(bytes, (width, height)).map_err(|e| fail(&e))?
    } else {
        None
    };
    let mut image = match libjpeg {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        None => DynamicImage::from_decoder(decoder).map_err(|e| fail(&e))?,
    };
    image.apply_orientation(orientation);
    Ok(match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// Channel order of the tensor a model takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[3, H, W]` (PyTorch, ONNX).
    Nchw,
    /// `[H, W, 3]` (TensorFlow).
    Nhwc,
}

/// The order of the colour channels in the tensor a model takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue (torchvision, Keras, TensorFlow, TorchServe).
    #[default]
    Rgb,
    /// Blue, green, red: models trained on OpenCV's or Caffe's images, and what OpenVINO Model
    /// Server gives a model from encoded images.
    Bgr,
}

impl ChannelOrder {
    /// Its name: `rgb` or `bgr`.
    pub fn name(self) -> &'static str {
        match self {
            ChannelOrder::Rgb => "rgb",
            ChannelOrder::Bgr => "bgr",
        }
    }
}

impl std::fmt::Display for ChannelOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ChannelOrder {
    type Err = Error;

    fn from_str(s: &str) -> Result<ChannelOrder> {
        match s.to_ascii_lowercase().as_str() {
            "rgb" => Ok(ChannelOrder::Rgb),
            "bgr" => Ok(ChannelOrder::Bgr),
            _ => Err(Error::InvalidValue {
                what: "channel order".into(),
                value: s.into(),
                expected: "rgb or bgr".into(),
            }),
        }
    }
}

/// Resize the shorter side, center-crop, normalise: an image model's evaluation
/// pre-processing (torchvision's `Resize(resize)`, `CenterCrop(crop)`, `Normalize(mean, std)`
/// on a PIL image).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageTransform {
    /// The shorter side after resizing (the longer keeps the aspect ratio, truncated as
    /// torchvision does).
    pub resize: u32,
    /// Side of the square center crop.
    pub crop: u32,
    /// Per-channel mean on the 0–1 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation on the 0–1 scale.
    pub std: [f32; 3],
    /// The tensor's layout.
    pub layout: Layout,
    /// The tensor's colour channels: RGB unless the model was trained on BGR images. `mean`
    /// and `std` stay R, G, B either way, each moving with its channel.
    pub channels: ChannelOrder,
    /// Images with more pixels are refused.
    pub max_pixels: u64,
}

/// Time spent in each step of one image's pre-processing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImageTimes {
    /// Decoding (with orientation and colour conversion).
    pub decode: Duration,
    /// Resizing and cropping.
    pub resize: Duration,
    /// Normalising into the tensor.
    pub normalize: Duration,
}

impl ImageTransform {
    /// A transform, checked: a crop no larger than the resized side, positive std.
    pub fn new(
        resize: u32,
        crop: u32,
        mean: [f32; 3],
        std: [f32; 3],
        layout: Layout,
    ) -> Result<ImageTransform> {
        if crop == 0 || resize < crop {
            return Err(Error::InvalidValue {
                what: "image transform".into(),
                value: format!("resize {resize}, crop {crop}"),
                expected: "a crop of at least 1 pixel, no larger than the resized shorter side"
                    .into(),
            });
        }
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::InvalidValue {
                what: "image transform".into(),
                value: format!("mean {mean:?}, std {std:?}"),
                expected: "finite means and positive standard deviations".into(),
            });
        }
        Ok(ImageTransform {
            resize,
            crop,
            mean,
            std,
            layout,
            channels: ChannelOrder::Rgb,
            max_pixels: DEFAULT_MAX_PIXELS,
        })
    }

    /// The same transform with the tensor's channels in `order`.
    pub fn with_channels(mut self, order: ChannelOrder) -> ImageTransform {
        self.channels = order;
        self
    }

    /// The same transform with another pixel limit.
    pub fn with_max_pixels(mut self, max_pixels: u64) -> ImageTransform {
        self.max_pixels = max_pixels;
        self
    }

    /// The size the shorter side is resized to, the longer one scaled and truncated
    /// (torchvision's `Resize(int)`).
    pub fn resized_size(&self, width: u32, height: u32) -> Result<(u32, u32)> {
        let (short, long) = (width.min(height), width.max(height));
        let scaled = u64::from(self.resize) * u64::from(long) / u64::from(short.max(1));
        // A 1 × 16,777,216 strip would scale its long side past u32: refused, not wrapped.
        let scaled = u32::try_from(scaled).ok().filter(|&s| s <= MAX_SIDE).ok_or_else(|| {
            bad_image(
                &format!("{width} × {height} pixels"),
                format!(
                    "an aspect ratio whose longer side, scaled for a shorter side of {}, stays \
                     within {MAX_SIDE} pixels",
                    self.resize
                ),
            )
        })?;
        Ok(if width <= height { (self.resize, scaled) } else { (scaled, self.resize) })
    }

    /// Resizes and crops `image`: the `crop × crop` RGB pixels the model sees.
    pub fn resize_crop(&self, image: &RgbImage) -> Result<RgbImage> {
        let (width, height) = image.dimensions();
        let (rw, rh) = self.resized_size(width, height)?;
        let fail = |e: String| Error::Translator {
            translator: NAME.into(),
            reason: format!("resizing {width} × {height} to {rw} × {rh}: {e}"),
        };
        let src = fir::images::ImageRef::new(width, height, image.as_raw(), fir::PixelType::U8x3)
            .map_err(|e| fail(e.to_string()))?;
        // torchvision's center crop: round((size - crop) / 2), halves to even as Python rounds.
        let offset = |size: u32| -> u32 {
            let twice = size.saturating_sub(self.crop);
            let (half, odd) = (twice / 2, twice % 2 == 1);
            if odd && half % 2 == 1 { half + 1 } else { half }
        };
        let (left, top) = (offset(rw), offset(rh));
        // Only the crop is computed: the source box that maps onto it, with the scale of the
        // whole resize (each output pixel's filter is the one a full resize would use),
        // clamped to the image where rounding would step past its edge.
        let (sx, sy) = (f64::from(width) / f64::from(rw), f64::from(height) / f64::from(rh));
        let side = f64::from(self.crop);
        let (x, y) = (f64::from(left) * sx, f64::from(top) * sy);
        let (w, h) =
            ((side * sx).min(f64::from(width) - x), (side * sy).min(f64::from(height) - y));
        let options = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear))
            .crop(x, y, w, h);
        let mut out = fir::images::Image::new(self.crop, self.crop, fir::PixelType::U8x3);
        fir::Resizer::new().resize(&src, &mut out, &options).map_err(|e| fail(e.to_string()))?;
        RgbImage::from_raw(self.crop, self.crop, out.into_vec())
            .ok_or_else(|| fail("the crop has the wrong size".into()))
    }

    /// Normalises a crop into the model's tensor (`[3, crop, crop]` or `[crop, crop, 3]`).
    pub fn normalize(&self, crop: &RgbImage) -> Result<Tensor> {
        let (w, h) = crop.dimensions();
        let plane = (w * h) as usize;
        // The crop's channel (R, G, B) each of the tensor's channels takes, and one table per
        // tensor channel (its source's mean and std): 256 values, so normalising is a lookup per
        // element.
        let source: [usize; 3] = match self.channels {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let tables: [[f32; 256]; 3] = std::array::from_fn(|c| {
            let s = source[c];
            std::array::from_fn(|v| (v as f32 / 255.0 - self.mean[s]) / self.std[s])
        });
        let mut data = vec![0f32; plane * 3];
        match self.layout {
            Layout::Nchw => {
                for (i, px) in crop.as_raw().chunks_exact(3).enumerate() {
                    for (c, &s) in source.iter().enumerate() {
                        data[c * plane + i] = tables[c][px[s] as usize];
                    }
                }
            }
            Layout::Nhwc => {
                for (out, px) in data.chunks_exact_mut(3).zip(crop.as_raw().chunks_exact(3)) {
                    for (c, &s) in source.iter().enumerate() {
                        out[c] = tables[c][px[s] as usize];
                    }
                }
            }
        }
        let shape = match self.layout {
            Layout::Nchw => vec![3, h as usize, w as usize],
            Layout::Nhwc => vec![h as usize, w as usize, 3],
        };
        Tensor::from_vec(shape, data)
    }

    /// Bytes of an encoded image → the model's input tensor, with each step's time.
    pub fn tensor_timed(&self, bytes: &[u8]) -> Result<(Tensor, ImageTimes)> {
        let start = Instant::now();
        let image = decode(bytes, self.max_pixels)?;
        let decoded = Instant::now();
        let crop = self.resize_crop(&image)?;
        let resized = Instant::now();
        let tensor = self.normalize(&crop)?;
        let times = ImageTimes {
            decode: decoded - start,
            resize: resized - decoded,
            normalize: resized.elapsed(),
        };
        Ok((tensor, times))
    }

    /// Bytes of an encoded image → the model's input tensor.
    pub fn tensor(&self, bytes: &[u8]) -> Result<Tensor> {
        self.tensor_timed(bytes).map(|(t, _)| t)
    }

    /// The layout `model`'s single image input has: `[N,3,H,W]` or `[N,H,W,3]`, with `H` and
    /// `W` equal to `crop` where they are fixed.
    pub fn layout_of(model: &Model, crop: u32) -> Result<Layout> {
        let fail = |reason: String| Error::Translator { translator: NAME.into(), reason };
        let [spec] = model.inputs() else {
            return Err(fail(format!(
                "model `{}` has {} inputs; an image classifier feeds exactly one",
                model.name(),
                model.inputs().len()
            )));
        };
        if spec.dtype != DType::F32 || spec.shape.len() != 4 {
            return Err(fail(format!(
                "input `{}` of model `{}` is {} {}; an image classifier feeds f32 [N,3,H,W] or [N,H,W,3]",
                spec.name,
                model.name(),
                spec.dtype,
                spec.shape_string()
            )));
        }
        let fits = |d: &Dim, want: usize| d.fixed().is_none_or(|v| v == want);
        let side = crop as usize;
        let s = &spec.shape;
        if fits(&s[1], 3) && fits(&s[2], side) && fits(&s[3], side) && s[1].fixed() == Some(3) {
            Ok(Layout::Nchw)
        } else if fits(&s[3], 3)
            && fits(&s[1], side)
            && fits(&s[2], side)
            && s[3].fixed() == Some(3)
        {
            Ok(Layout::Nhwc)
        } else {
            Err(fail(format!(
                "input `{}` of model `{}` is {}; a {side} × {side} RGB image needs [N,3,{side},{side}] or [N,{side},{side},3]",
                spec.name,
                model.name(),
                spec.shape_string()
            )))
        }
    }
}

/// Encoded image bytes → the model → the top-k classes (softmax probabilities, labels).
#[derive(Clone, Debug)]
pub struct ImageClassifier {
    transform: ImageTransform,
    classifier: Classifier,
}

impl ImageClassifier {
    /// A classifier that pre-processes with `transform` and keeps the `top_k` best classes,
    /// named by `labels` (in output order) where given.
    pub fn new(
        transform: ImageTransform,
        top_k: usize,
        labels: Option<Vec<String>>,
    ) -> ImageClassifier {
        let classifier = Classifier::new(top_k);
        let classifier = match labels {
            Some(labels) => classifier.with_labels(labels),
            None => classifier,
        };
        ImageClassifier { transform, classifier }
    }

    /// Its pre-processing.
    pub fn transform(&self) -> &ImageTransform {
        &self.transform
    }
}

impl Translator for ImageClassifier {
    type Input = Vec<u8>;
    type Output = Vec<Classification>;

    fn name(&self) -> &str {
        NAME
    }

    fn batchifier(&self) -> Batchifier {
        Batchifier::Stack
    }

    fn preprocess(&self, _model: &Model, input: Vec<u8>) -> Result<Vec<Tensor>> {
        Ok(vec![self.transform.tensor(&input)?])
    }

    fn preprocess_parts(&self) -> Option<[&'static str; 2]> {
        Some(["decode", "resize"])
    }

    /// Decoding, then resizing with the crop and normalisation.
    fn preprocess_timed(
        &self,
        _model: &Model,
        input: Vec<u8>,
    ) -> Result<(Vec<Tensor>, [std::time::Duration; 2])> {
        let (tensor, times) = self.transform.tensor_timed(&input)?;
        Ok((vec![tensor], [times.decode, times.resize + times.normalize]))
    }

    fn postprocess(&self, model: &Model, outputs: Vec<Tensor>) -> Result<Vec<Classification>> {
        self.classifier.postprocess(model, outputs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A JPEG of more scans than the limit is refused on its markers, before decoding.
    #[test]
    fn a_jpeg_of_too_many_scans_is_refused_by_name() {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46];
        for _ in 0..=jpeg::MAX_SCANS {
            bytes.extend([0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12, 0x34]);
        }
        bytes.extend([0xFF, 0xD9]);
        let err = decode(&bytes, DEFAULT_MAX_PIXELS).unwrap_err().to_string();
        assert!(err.contains("JPEG of 101 scans") && err.contains("at most 100 scans"), "{err}");
    }

    #[test]
    fn extreme_aspect_ratios_are_refused_not_wrapped() {
        let t = ImageTransform::new(256, 224, [0.5; 3], [0.5; 3], Layout::Nchw).unwrap();
        assert_eq!(t.resized_size(451, 300).unwrap(), (384, 256));
        assert_eq!(t.resized_size(300, 451).unwrap(), (256, 384));
        let err = t.resized_size(1, 16_777_216).unwrap_err().to_string();
        assert!(err.contains("aspect ratio"), "{err}");
    }

    /// NHWC (a Keras or TensorFlow export) holds the same values as NCHW, channels last, each
    /// normalised with its own channel's mean and std.
    #[test]
    fn nhwc_is_nchw_with_the_channels_last() {
        let mean = [0.485, 0.456, 0.406];
        let std = [0.229, 0.224, 0.225];
        let nchw = ImageTransform::new(8, 4, mean, std, Layout::Nchw).unwrap();
        let nhwc = ImageTransform::new(8, 4, mean, std, Layout::Nhwc).unwrap();
        let image = RgbImage::from_fn(12, 8, |x, y| {
            image::Rgb([(x * 20) as u8, (y * 30) as u8, ((x + y) * 7) as u8])
        });
        let (a, b) = (nchw.resize_crop(&image).unwrap(), nhwc.resize_crop(&image).unwrap());
        assert_eq!(a, b, "the layout does not change the crop");
        let (a, b) = (nchw.normalize(&a).unwrap(), nhwc.normalize(&b).unwrap());
        assert_eq!(a.shape(), [3, 4, 4]);
        assert_eq!(b.shape(), [4, 4, 3]);
        let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
        let crop = nchw.resize_crop(&image).unwrap();
        for c in 0..3 {
            for h in 0..4 {
                for w in 0..4 {
                    let pixel = f32::from(crop.get_pixel(w as u32, h as u32)[c]);
                    let want = (pixel / 255.0 - mean[c]) / std[c];
                    assert!((a[(c * 4 + h) * 4 + w] - want).abs() < 1e-6);
                    assert_eq!(a[(c * 4 + h) * 4 + w], b[(h * 4 + w) * 3 + c], "c {c} h {h} w {w}");
                }
            }
        }
    }

    /// BGR is RGB with the first and last channels swapped, each with its own mean and std,
    /// in both layouts.
    #[test]
    fn bgr_swaps_red_and_blue_with_their_mean_and_std() {
        let mean = [0.485, 0.456, 0.406];
        let std = [0.229, 0.224, 0.225];
        let image = RgbImage::from_fn(12, 8, |x, y| {
            image::Rgb([(x * 20) as u8, (y * 30) as u8, ((x + y) * 7) as u8])
        });
        for layout in [Layout::Nchw, Layout::Nhwc] {
            let rgb = ImageTransform::new(8, 4, mean, std, layout).unwrap();
            let bgr = rgb.clone().with_channels(ChannelOrder::Bgr);
            let crop = rgb.resize_crop(&image).unwrap();
            let (a, b) = (rgb.normalize(&crop).unwrap(), bgr.normalize(&crop).unwrap());
            assert_eq!(a.shape(), b.shape());
            let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
            let at = |c: usize, i: usize| match layout {
                Layout::Nchw => c * 16 + i,
                Layout::Nhwc => i * 3 + c,
            };
            for i in 0..16 {
                for c in 0..3 {
                    assert_eq!(b[at(c, i)], a[at(2 - c, i)], "{layout:?}: channel {c}, pixel {i}");
                }
            }
        }
        assert_eq!("BGR".parse::<ChannelOrder>().unwrap(), ChannelOrder::Bgr);
        let err = "bgra".parse::<ChannelOrder>().unwrap_err().to_string();
        assert!(err.contains("bgra") && err.contains("rgb or bgr"), "{err}");
    }

    #[test]
    fn the_crop_box_stays_inside_the_image_when_resize_equals_crop() {
        let t = ImageTransform::new(224, 224, [0.5; 3], [0.5; 3], Layout::Nchw).unwrap();
        for width in [29u32, 58, 116, 300, 1000] {
            let image = RgbImage::from_pixel(width, 224, image::Rgb([10, 20, 30]));
            let crop = t.resize_crop(&image).unwrap();
            assert_eq!(crop.dimensions(), (224, 224), "width {width}");
        }
    }
}
