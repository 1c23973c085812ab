//! TEMPORARY STUB: replaced by the decoding module being written.
#[derive(Clone, Debug)]
pub struct DecodeLimits {
    pub max_input_bytes: usize,
    pub max_pixels: u64,
    pub max_side: u32,
}
impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_input_bytes: 32 << 20,
            max_pixels: 64_000_000,
            max_side: 16384,
        }
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    WebP,
    Bmp,
    Tiff,
}
pub struct DecodedImage {
    pub format: ImageFormat,
    pub rgb: image::RgbImage,
}
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("input too large: {size} bytes, limit {limit}")]
    InputTooLarge { size: usize, limit: usize },
    #[error("corrupt: {0}")]
    Corrupt(String),
}
pub fn decode_image(bytes: &[u8], _limits: &DecodeLimits) -> Result<DecodedImage, DecodeError> {
    let image = image::load_from_memory(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    Ok(DecodedImage {
        format: ImageFormat::Png,
        rgb: image.into_rgb8(),
    })
}
impl DecodeError {
    pub fn is_limit(&self) -> bool {
        matches!(self, DecodeError::InputTooLarge { .. })
    }
}
