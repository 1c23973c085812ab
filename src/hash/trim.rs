//! Finding the picture inside added margins: borders, padding, letterbox and pillarbox bars,
//! caption bands with text in them, a screenshot's frame.
//!
//! Re-uploads are often the flagged picture with something around it. PDQ hashes the whole
//! frame, so a margin of a tenth of the width moves the hash far past any threshold; the
//! picture inside, cut out again, hashes close to the original. The test here is a margin's
//! colour, not its content: from each edge, lines (rows or columns) where nearly every pixel
//! is the edge's colour are margin; lines where many are (text written on a band) are margin
//! too when a plain margin line follows within a short gap, so a caption band is removed
//! whole, but a picture whose edge merely resembles the border's colour is not eaten into. A
//! frame inside a frame is peeled layer by layer.

/// The rectangle of the picture, in pixels: columns `left..right`, rows `top..bottom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentBox {
    pub left: usize,
    pub top: usize,
    pub right: usize,
    pub bottom: usize,
}

impl ContentBox {
    /// The whole of a `width`×`height` image.
    pub fn whole(width: usize, height: usize) -> ContentBox {
        ContentBox {
            left: 0,
            top: 0,
            right: width,
            bottom: height,
        }
    }

    pub fn width(&self) -> usize {
        self.right - self.left
    }

    pub fn height(&self) -> usize {
        self.bottom - self.top
    }

    /// This box, given in the coordinates of the area `outer`, in the coordinates `outer` is
    /// given in.
    pub fn within(self, outer: ContentBox) -> ContentBox {
        ContentBox {
            left: outer.left + self.left,
            top: outer.top + self.top,
            right: outer.left + self.right,
            bottom: outer.top + self.bottom,
        }
    }
}

/// Two pixels are the same colour when no channel differs by more than this: margins are
/// flat colour, but JPEG ringing and dithering wobble them.
const TOLERANCE: u8 = 20;
/// A line is plain margin when this share of its pixels is the edge's colour.
const PLAIN: f32 = 0.94;
/// A line is margin with something written on it when this share is.
const WRITTEN_ON: f32 = 0.30;
/// Lines with writing count as margin only if a plain line follows within this share of the
/// image's extent (the height of a caption's text).
const MAX_WRITING: f32 = 0.20;
/// Margins thinner than this share of the extent are left alone: one or two lines of a
/// photo's own edge often look flat.
const MIN_MARGIN: f32 = 0.015;
/// The picture left must keep at least this share of each side.
const MIN_SIDE: f32 = 0.25;
/// Frames inside frames are peeled at most this many times.
const MAX_LAYERS: usize = 3;

/// The picture inside the margins of a packed RGB8 image, or `None` when it has none worth
/// removing.
pub fn content_box(rgb: &[u8], width: usize, height: usize) -> Option<ContentBox> {
    if width < 16 || height < 16 || rgb.len() != width * height * 3 {
        return None;
    }
    let image = Rgb { rgb, width };
    let whole = ContentBox::whole(width, height);
    let mut bounds = whole;
    for _ in 0..MAX_LAYERS {
        let peeled = peel(&image, bounds);
        if peeled == bounds {
            break;
        }
        bounds = peeled;
    }
    let big_enough = bounds.width() as f32 >= MIN_SIDE * width as f32
        && bounds.height() as f32 >= MIN_SIDE * height as f32;
    (bounds != whole && big_enough).then_some(bounds)
}

/// Copies the pixels of `area` out of a packed RGB8 image.
pub fn crop(rgb: &[u8], width: usize, area: ContentBox) -> Vec<u8> {
    let mut out = Vec::with_capacity(area.width() * area.height() * 3);
    for row in area.top..area.bottom {
        let start = (row * width + area.left) * 3;
        out.extend_from_slice(&rgb[start..start + area.width() * 3]);
    }
    out
}

struct Rgb<'a> {
    rgb: &'a [u8],
    width: usize,
}

impl Rgb<'_> {
    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let at = (y * self.width + x) * 3;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }
}

#[derive(Clone, Copy)]
enum Side {
    Top,
    Bottom,
    Left,
    Right,
}

/// One layer: each side's margin within `bounds`, measured on the picture as `bounds` leaves
/// it.
fn peel(image: &Rgb<'_>, bounds: ContentBox) -> ContentBox {
    let top = margin(image, bounds, Side::Top);
    let bottom = margin(image, bounds, Side::Bottom);
    let left = margin(image, bounds, Side::Left);
    let right = margin(image, bounds, Side::Right);
    let peeled = ContentBox {
        left: bounds.left + left,
        top: bounds.top + top,
        right: bounds.right - right,
        bottom: bounds.bottom - bottom,
    };
    if peeled.left >= peeled.right || peeled.top >= peeled.bottom {
        // All margin: a flat image, nothing inside to find.
        return bounds;
    }
    peeled
}

/// How many lines from `side` of `bounds` are margin.
fn margin(image: &Rgb<'_>, bounds: ContentBox, side: Side) -> usize {
    let (extent, across) = match side {
        Side::Top | Side::Bottom => (bounds.height(), bounds.width()),
        Side::Left | Side::Right => (bounds.width(), bounds.height()),
    };
    // Line `i` from the side, pixel `j` along it.
    let at = |i: usize, j: usize| match side {
        Side::Top => image.pixel(bounds.left + j, bounds.top + i),
        Side::Bottom => image.pixel(bounds.left + j, bounds.bottom - 1 - i),
        Side::Left => image.pixel(bounds.left + i, bounds.top + j),
        Side::Right => image.pixel(bounds.right - 1 - i, bounds.top + j),
    };
    let colour = median_colour((0..across).map(|j| at(0, j)));
    let share = |i: usize| {
        let same = (0..across).filter(|&j| close(at(i, j), colour)).count();
        same as f32 / across as f32
    };
    let max_writing = ((MAX_WRITING * extent as f32) as usize).max(1);
    let limit = extent - (MIN_SIDE * extent as f32) as usize;
    let mut end = 0;
    let mut i = 0;
    while i < limit {
        let s = share(i);
        if s >= PLAIN {
            end = i + 1;
        } else if s < WRITTEN_ON || i - end >= max_writing {
            break;
        }
        i += 1;
    }
    if (end as f32) < MIN_MARGIN * extent as f32 {
        0
    } else {
        end
    }
}

/// Whether two pixels are the same colour, within [`TOLERANCE`] per channel.
pub(super) fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    (0..3).all(|c| a[c].abs_diff(b[c]) <= TOLERANCE)
}

/// Each channel's median over a line: the margin's colour, whatever is drawn on part of it.
pub(super) fn median_colour(pixels: impl Iterator<Item = [u8; 3]>) -> [u8; 3] {
    let mut counts = [[0u32; 256]; 3];
    let mut total = 0u32;
    for pixel in pixels {
        for c in 0..3 {
            counts[c][pixel[c] as usize] += 1;
        }
        total += 1;
    }
    let mut colour = [0u8; 3];
    for c in 0..3 {
        let mut seen = 0;
        for (value, count) in counts[c].iter().enumerate() {
            seen += count;
            if 2 * seen >= total {
                colour[c] = value as u8;
                break;
            }
        }
    }
    colour
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured picture (no flat lines) of `w`×`h`.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let mut state = 12345u32;
        let mut rgb = Vec::with_capacity(w * h * 3);
        for _ in 0..w * h * 3 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            rgb.push((state >> 16) as u8);
        }
        rgb
    }

    /// `inner` (`iw`×`ih`) placed at (`x`, `y`) on a `w`×`h` canvas of `colour`.
    fn framed(
        inner: &[u8],
        (iw, ih): (usize, usize),
        (w, h): (usize, usize),
        (x, y): (usize, usize),
        colour: [u8; 3],
    ) -> Vec<u8> {
        let mut rgb: Vec<u8> = std::iter::repeat_n(colour, w * h).flatten().collect();
        for row in 0..ih {
            let to = ((y + row) * w + x) * 3;
            rgb[to..to + iw * 3].copy_from_slice(&inner[row * iw * 3..(row + 1) * iw * 3]);
        }
        rgb
    }

    #[test]
    fn a_picture_without_margins_is_left_alone() {
        assert_eq!(content_box(&picture(200, 150), 200, 150), None);
    }

    #[test]
    fn borders_and_letterbox_bars_are_found_exactly() {
        let inner = picture(160, 90);
        let boxed = framed(&inner, (160, 90), (200, 150), (20, 30), [0, 0, 0]);
        let found = content_box(&boxed, 200, 150).unwrap();
        assert_eq!(
            found,
            ContentBox {
                left: 20,
                top: 30,
                right: 180,
                bottom: 120
            }
        );
        assert_eq!(crop(&boxed, 200, found), inner);
        let off_centre = framed(&inner, (160, 90), (170, 130), (0, 40), [255, 255, 255]);
        assert_eq!(
            content_box(&off_centre, 170, 130),
            Some(ContentBox {
                left: 0,
                top: 40,
                right: 160,
                bottom: 130
            })
        );
    }

    #[test]
    fn a_caption_band_with_text_goes_whole_and_frames_peel_in_layers() {
        let inner = picture(120, 100);
        let mut rgb = framed(&inner, (120, 100), (120, 140), (0, 40), [255, 255, 255]);
        // "Text": dark strokes over half of rows 10..30 of the band.
        for row in 10..30 {
            for x in (0..120).filter(|x| (x / 3) % 2 == 0) {
                rgb[(row * 120 + x) * 3..(row * 120 + x) * 3 + 3].copy_from_slice(&[10, 10, 10]);
            }
        }
        assert_eq!(
            content_box(&rgb, 120, 140).map(|b| (b.top, b.height())),
            Some((40, 100))
        );
        let framed_twice = framed(&rgb, (120, 140), (160, 180), (20, 20), [90, 90, 200]);
        assert_eq!(
            content_box(&framed_twice, 160, 180),
            Some(ContentBox {
                left: 20,
                top: 60,
                right: 140,
                bottom: 160
            })
        );
    }

    #[test]
    fn flat_images_and_thin_edges_are_not_trimmed() {
        let flat = vec![128u8; 100 * 100 * 3];
        assert_eq!(content_box(&flat, 100, 100), None);
        let inner = picture(200, 200);
        let thin = framed(&inner, (200, 200), (202, 200), (1, 0), [0, 0, 0]);
        assert_eq!(content_box(&thin, 202, 200), None);
        // Most of the image margin: what is left is too small to be the picture.
        let tiny = framed(&picture(20, 20), (20, 20), (200, 200), (90, 90), [0, 0, 0]);
        assert_eq!(content_box(&tiny, 200, 200), None);
    }
}
