//! The picture on a backdrop made of itself: short-video and story apps fit a landscape photo
//! into a portrait frame (or a portrait one into a landscape frame) over a zoomed, blurred copy
//! of it. Such a backdrop is not flat, so trimming margins stops at its first line; but it is
//! smooth, and the picture's edge is a sharp step along the whole frame, as far from one end
//! of the frame as from the other.

use super::trim::ContentBox;

/// Most a backdrop line may differ from its neighbour, and along itself, pixel by pixel
/// (mean absolute luma difference, 0–255): a blurred copy stays near 1, JPEG noise included;
/// a photo's textured lines go well past it.
const SMOOTH: f32 = 3.0;
/// Least median luma difference across the picture's edge: a pasted picture differs from the
/// blurred backdrop beside it along most of the edge, a natural edge (a horizon) seldom does.
const STEP: f32 = 8.0;
/// Least share of the frame each backdrop band must take, so that a photo's own smooth edge
/// lines are not taken for one.
const MIN_MARGIN: f32 = 0.015;
/// Most the two bands may differ, as a share of the frame: apps centre the picture.
const MAX_ASYMMETRY: f32 = 0.02;
/// Frames smaller than this on a side (thumbnails, where JPEG blocks look like edges) are
/// left alone.
const MIN_SIDE: usize = 128;

/// The picture inside a blurred backdrop of itself: full width between bands above and below,
/// or full height between bands left and right. None when the image is not so framed.
pub fn picture_box(rgb: &[u8], width: usize, height: usize) -> Option<ContentBox> {
    if width < MIN_SIDE || height < MIN_SIDE || rgb.len() != width * height * 3 {
        return None;
    }
    let luma = |x: usize, y: usize| {
        let at = (y * width + x) * 3;
        0.299 * f32::from(rgb[at]) + 0.587 * f32::from(rgb[at + 1]) + 0.114 * f32::from(rgb[at + 2])
    };
    let row = |y: usize| (0..width).map(|x| luma(x, y)).collect::<Vec<f32>>();
    let column = |x: usize| (0..height).map(|y| luma(x, y)).collect::<Vec<f32>>();
    if let Some((top, bottom)) = bands(height, row, |i| row(height - 1 - i)) {
        return Some(ContentBox {
            left: 0,
            top,
            right: width,
            bottom: height - bottom,
        });
    }
    let (left, right) = bands(width, column, |i| column(width - 1 - i))?;
    Some(ContentBox {
        left,
        top: 0,
        right: width - right,
        bottom: height,
    })
}

/// How many lines of backdrop each end of `count` lines holds, if both ends hold a band and
/// the two are about the same size; `line(i)` and `line_from_end(i)` are the `i`-th lines
/// from each end.
fn bands(
    count: usize,
    line: impl Fn(usize) -> Vec<f32>,
    line_from_end: impl Fn(usize) -> Vec<f32>,
) -> Option<(usize, usize)> {
    let least = (MIN_MARGIN * count as f32).ceil() as usize;
    let first = band(count, &line).filter(|&lines| lines >= least)?;
    let last = band(count, &line_from_end).filter(|&lines| lines >= least)?;
    (first.abs_diff(last) as f32 <= MAX_ASYMMETRY * count as f32).then_some((first, last))
}

/// The number of smooth lines from one end before the first line that is not, if that line
/// begins with a sharp step from the one before it (the picture's edge).
fn band(count: usize, line: &impl Fn(usize) -> Vec<f32>) -> Option<usize> {
    let mut previous = line(0);
    for index in 1..count / 2 {
        let current = line(index);
        let mut across: Vec<f32> = current
            .iter()
            .zip(&previous)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let along = current
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).abs())
            .sum::<f32>()
            / (current.len() - 1) as f32;
        let mean_across = across.iter().sum::<f32>() / across.len() as f32;
        if mean_across > SMOOTH || along > SMOOTH {
            let middle = across.len() / 2;
            let (_, median, _) = across.select_nth_unstable_by(middle, f32::total_cmp);
            return (*median >= STEP).then_some(index);
        }
        previous = current;
    }
    None
}

/// The bridge photo of the PDQ test data, decoded: a test picture.
#[cfg(test)]
pub(crate) fn bridge() -> image::RgbImage {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pdq/bridge-mods/aaa-orig.jpg");
    image::open(path).unwrap().to_rgb8()
}

/// `photo` fitted across a portrait 9:16 frame over a zoomed, blurred copy of itself, and the
/// picture's top row: a test picture.
#[cfg(test)]
pub(crate) fn on_blurred_backdrop(photo: &image::RgbImage) -> (image::RgbImage, u32) {
    let (w, h) = photo.dimensions();
    let frame_h = w * 16 / 9;
    let zoomed = image::imageops::resize(
        photo,
        w * frame_h / h,
        frame_h,
        image::imageops::FilterType::Triangle,
    );
    let left = (zoomed.width() - w) / 2;
    let mut frame = image::imageops::blur(
        &image::imageops::crop_imm(&zoomed, left, 0, w, frame_h).to_image(),
        12.0,
    );
    let top = (frame_h - h) / 2;
    image::imageops::replace(&mut frame, photo, 0, i64::from(top));
    (frame, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_photo_on_a_blurred_copy_of_itself_is_found() {
        let photo = image::imageops::resize(&bridge(), 400, 251, image::imageops::FilterType::Triangle);
        let (frame, top) = on_blurred_backdrop(&photo);
        let (w, h) = frame.dimensions();
        let found = picture_box(frame.as_raw(), w as usize, h as usize).unwrap();
        let top = top as usize;
        assert_eq!(
            found,
            ContentBox {
                left: 0,
                top,
                right: 400,
                bottom: top + 251
            }
        );
        // Turned a quarter, the bands are left and right.
        let turned = image::imageops::rotate90(&frame);
        let found = picture_box(turned.as_raw(), h as usize, w as usize).unwrap();
        assert_eq!((found.top, found.bottom), (0, 400));
        assert_eq!(found.width(), 251);
    }

    #[test]
    fn photos_and_flat_or_tiny_frames_are_left_alone() {
        let photo = bridge();
        let (w, h) = photo.dimensions();
        assert_eq!(picture_box(photo.as_raw(), w as usize, h as usize), None);
        // A flat frame is trimming's job, and the bands must match: here one side only.
        let mut framed = image::RgbImage::from_pixel(w, h + 200, image::Rgb([0, 0, 0]));
        image::imageops::replace(&mut framed, &photo, 0, 200);
        assert_eq!(picture_box(framed.as_raw(), w as usize, h as usize + 200), None);
        let small = image::imageops::resize(&photo, 100, 63, image::imageops::FilterType::Triangle);
        let (frame, _) = on_blurred_backdrop(&small);
        let (fw, fh) = frame.dimensions();
        assert_eq!(picture_box(frame.as_raw(), fw as usize, fh as usize), None);
    }
}
