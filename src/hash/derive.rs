//! Pictures derived from a flagged image, whose PDQ hashes a bank stores beside the image's
//! own so that edited re-uploads match with a plain hash lookup: the image turned and mirrored
//! exactly (PDQ's dihedral variants computed from the DCT only approximate those for most
//! image sizes), and sub-windows of it (PDQ moves past any threshold once a few percent of
//! the frame is cropped away).
//!
//! The cost is at add time and in memory: one more stored hash per derived picture. A check
//! searches the upload's own hashes, and when asked, those of its [`overlay_windows`]: the
//! stored windows then match an upload whose caption, logo or text covers an edge or corner.

use super::trim::ContentBox;

/// The 7 turns and mirrors of a packed RGB8 image (every dihedral symmetry but the identity),
/// each with its width and height.
pub fn dihedral(rgb: &[u8], width: usize, height: usize) -> Vec<(Vec<u8>, usize, usize)> {
    let mut out = Vec::with_capacity(7);
    for swap in [false, true] {
        for flip_x in [false, true] {
            for flip_y in [false, true] {
                if !(swap || flip_x || flip_y) {
                    continue;
                }
                let (out_w, out_h) = if swap { (height, width) } else { (width, height) };
                let mut pixels = Vec::with_capacity(rgb.len());
                for y in 0..out_h {
                    for x in 0..out_w {
                        let (mut sx, mut sy) = if swap { (y, x) } else { (x, y) };
                        if flip_x {
                            sx = width - 1 - sx;
                        }
                        if flip_y {
                            sy = height - 1 - sy;
                        }
                        let at = (sy * width + sx) * 3;
                        pixels.extend_from_slice(&rgb[at..at + 3]);
                    }
                }
                out.push((pixels, out_w, out_h));
            }
        }
    }
    out
}

/// Shares of each side cropped away by the stored sub-windows: every 2.5% up to 20%. PDQ
/// tolerates about 1% of crop (measured on the benchmark photos: a 1% centre crop keeps 94%
/// of them within distance 31, 2% keeps 82%), so the grid leaves no crop up to 21% more than
/// 1.25% from a stored window.
const CROP_STEPS: [f32; 8] = [0.025, 0.05, 0.075, 0.10, 0.125, 0.15, 0.175, 0.20];

/// Shares of one side cropped away, half from each end, by the stored one-axis windows: every
/// 2.5% up to 40%. Apps crop one axis to fit an aspect (a 4:3 photo cut to a square loses 25%
/// of its width, a 16:9 one 44%), which the windows cropping both sides alike do not cover.
const AXIS_CROP_STEPS: usize = 16;
const AXIS_CROP_STEP: f32 = 0.025;

/// Sub-windows of a `width`×`height` image: for each crop share, the window centred and the
/// windows in each of the four corners (the crop taken all from two adjacent sides); the
/// middle band of [`overlay_windows`]; the centred windows with only the width, or only the
/// height, cropped; and the centred square.
pub fn crop_windows(width: usize, height: usize) -> Vec<ContentBox> {
    let mut windows: Vec<ContentBox> = CROP_STEPS
        .iter()
        .flat_map(|&share| windows_at(width, height, share, true))
        .collect();
    windows.extend(middle_band(width, height));
    let one_axis = (1..=AXIS_CROP_STEPS).flat_map(|step| {
        let share = step as f32 * AXIS_CROP_STEP;
        [
            centred(width, height, (width as f32 * share).round() as usize, 0),
            centred(width, height, 0, (height as f32 * share).round() as usize),
        ]
    });
    let side = width.min(height);
    let square = centred(width, height, width - side, height - side);
    // Some coincide with a window already there (the band is the 40% height window; a 4:3
    // picture's square is its 25% width window): each is stored once.
    for window in one_axis.chain([square]).flatten() {
        if !windows.contains(&window) {
            windows.push(window);
        }
    }
    windows
}

/// The window with `dx` cut from the width and `dy` from the height, half from each end; none
/// when that cuts nothing or everything.
fn centred(width: usize, height: usize, dx: usize, dy: usize) -> Option<ContentBox> {
    let cuts_something = dx > 0 || dy > 0;
    (cuts_something && dx < width && dy < height).then_some(ContentBox {
        left: dx / 2,
        top: dy / 2,
        right: dx / 2 + width - dx,
        bottom: dy / 2 + height - dy,
    })
}

/// The windows of an upload that leave out where captions, logos and tickers usually sit: the
/// four corner windows with the widest stored crop taken from two adjacent sides, and the
/// middle band with as much cut from the top and from the bottom (a meme's two captions).
/// Each equals a window [`crop_windows`] stored of the original.
pub fn overlay_windows(width: usize, height: usize) -> Vec<ContentBox> {
    let mut windows = windows_at(width, height, WIDEST_CROP, false);
    windows.extend(middle_band(width, height));
    windows
}

/// The widest crop share of the stored windows.
const WIDEST_CROP: f32 = CROP_STEPS[CROP_STEPS.len() - 1];

/// The full-width band with [`WIDEST_CROP`] of the height cut from the top and from the
/// bottom, if that leaves any.
fn middle_band(width: usize, height: usize) -> Option<ContentBox> {
    let cut = (height as f32 * WIDEST_CROP).round() as usize;
    centred(width, height, 0, 2 * cut)
}

/// The windows with `share` of each side cropped away: in the four corners, and centred too
/// when asked. None when the share rounds to nothing or to the whole side.
fn windows_at(width: usize, height: usize, share: f32, centred: bool) -> Vec<ContentBox> {
    let (dx, dy) = (
        (width as f32 * share).round() as usize,
        (height as f32 * share).round() as usize,
    );
    if dx == 0 || dy == 0 || dx >= width || dy >= height {
        return Vec::new();
    }
    let (w, h) = (width - dx, height - dy);
    let centre = centred.then_some((dx / 2, dy / 2));
    centre
        .into_iter()
        .chain([(0, 0), (dx, 0), (0, dy), (dx, dy)])
        .map(|(left, top)| ContentBox {
            left,
            top,
            right: left + w,
            bottom: top + h,
        })
        .collect()
}

/// Angles of the stored small rotations, in degrees each way: PDQ tolerates about 0.75° of
/// turn (measured on the benchmark photos: 0.5° keeps 88% of them within distance 31, 1° 71%),
/// so a grid of whole degrees leaves no turn up to 10.5° more than 0.5° from a stored one.
const ROTATION_DEGREES: [f32; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];

/// The image turned by small angles both ways, each twice: whole on a larger black canvas (how
/// editors turn a picture), and cut to the largest centred rectangle of its shape with no
/// corner showing (how they straighten one). Bilinear sampling.
pub fn small_rotations(rgb: &[u8], width: usize, height: usize) -> Vec<(Vec<u8>, usize, usize)> {
    let mut out = Vec::with_capacity(ROTATION_DEGREES.len() * 4);
    for degrees in ROTATION_DEGREES {
        for sign in [1.0f32, -1.0] {
            let radians = (sign * degrees).to_radians();
            let (sin, cos) = radians.sin_cos();
            let (w, h) = (width as f32, height as f32);
            // Whole, on a canvas that holds it.
            let (canvas_w, canvas_h) = (
                (w * cos.abs() + h * sin.abs()).ceil() as usize,
                (w * sin.abs() + h * cos.abs()).ceil() as usize,
            );
            out.push((
                rotate(rgb, width, height, radians, canvas_w, canvas_h),
                canvas_w,
                canvas_h,
            ));
            // Cut to the inner rectangle of the same shape.
            let factor = (w / (w * cos + h * sin.abs())).min(h / (w * sin.abs() + h * cos));
            let (inner_w, inner_h) = ((w * factor) as usize, (h * factor) as usize);
            if inner_w >= 16 && inner_h >= 16 {
                out.push((
                    rotate(rgb, width, height, radians, inner_w, inner_h),
                    inner_w,
                    inner_h,
                ));
            }
        }
    }
    out
}

/// `rgb` turned counter-clockwise by `radians` about its centre, sampled onto an
/// `out_w`×`out_h` canvas centred on it; black where the canvas lies outside the picture.
fn rotate(rgb: &[u8], width: usize, height: usize, radians: f32, out_w: usize, out_h: usize) -> Vec<u8> {
    let (sin, cos) = radians.sin_cos();
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    let (ox, oy) = (out_w as f32 / 2.0, out_h as f32 / 2.0);
    let mut out = vec![0u8; out_w * out_h * 3];
    for y in 0..out_h {
        for x in 0..out_w {
            // The source point that lands on this pixel's centre (inverse rotation; y down).
            let (dx, dy) = (x as f32 + 0.5 - ox, y as f32 + 0.5 - oy);
            let sx = cos * dx - sin * dy + cx - 0.5;
            let sy = sin * dx + cos * dy + cy - 0.5;
            if sx < 0.0 || sy < 0.0 || sx > (width - 1) as f32 || sy > (height - 1) as f32 {
                continue;
            }
            let (x0, y0) = (sx as usize, sy as usize);
            let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let at = |px: usize, py: usize, c: usize| f32::from(rgb[(py * width + px) * 3 + c]);
            for c in 0..3 {
                let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
                let bottom = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
                out[(y * out_w + x) * 3 + c] = (top * (1.0 - fy) + bottom * fy).round() as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seven_turns_and_mirrors_are_distinct_and_exact() {
        // 3×2: pixel value = 10·y + x.
        let rgb: Vec<u8> = (0..2)
            .flat_map(|y| (0..3).flat_map(move |x| [10 * y + x; 3]))
            .collect();
        let variants = dihedral(&rgb, 3, 2);
        assert_eq!(variants.len(), 7);
        let grey = |(pixels, w, h): &(Vec<u8>, usize, usize)| {
            (pixels.iter().step_by(3).copied().collect::<Vec<u8>>(), *w, *h)
        };
        let all: Vec<_> = variants.iter().map(grey).collect();
        // Mirrored left to right; turned upside down; transposed.
        assert!(all.contains(&(vec![2, 1, 0, 12, 11, 10], 3, 2)));
        assert!(all.contains(&(vec![10, 11, 12, 0, 1, 2], 3, 2)));
        assert!(all.contains(&(vec![0, 10, 1, 11, 2, 12], 2, 3)));
        for (i, a) in all.iter().enumerate() {
            assert_ne!(a.0, vec![0, 1, 2, 10, 11, 12], "the identity is not among them");
            assert!(all[i + 1..].iter().all(|b| b != a), "duplicates");
        }
    }

    #[test]
    fn small_rotations_turn_about_the_centre_both_ways() {
        // A bright pixel right of centre moves up for a counter-clockwise turn, down otherwise.
        let (w, h) = (41, 41);
        let mut rgb = vec![0u8; w * h * 3];
        rgb[(20 * w + 35) * 3..(20 * w + 35) * 3 + 3].copy_from_slice(&[255; 3]);
        let turned = rotate(&rgb, w, h, 10f32.to_radians(), w, h);
        let brightest = |pixels: &[u8]| {
            (0..w * h)
                .max_by_key(|i| pixels[i * 3])
                .map(|i| (i % w, i / w))
                .unwrap()
        };
        let (x, y) = brightest(&turned);
        assert!(x >= 33 && y < 20, "({x}, {y})");
        let (_, y) = brightest(&rotate(&rgb, w, h, -10f32.to_radians(), w, h));
        assert!(y > 20);
        let variants = small_rotations(&vec![128u8; 100 * 80 * 3], 100, 80);
        assert_eq!(variants.len(), 40);
        assert!(
            variants
                .iter()
                .all(|(pixels, vw, vh)| pixels.len() == vw * vh * 3)
        );
    }

    #[test]
    fn crop_windows_cover_centre_and_corners_within_the_image() {
        let windows = crop_windows(200, 100);
        assert_eq!(windows.len(), 73);
        assert!(
            windows
                .iter()
                .all(|w| w.right <= 200 && w.bottom <= 100 && w.width() > 0)
        );
        assert!(windows.contains(&ContentBox {
            left: 10,
            top: 5,
            right: 190,
            bottom: 95
        }));
        assert!(windows.contains(&ContentBox {
            left: 40,
            top: 20,
            right: 200,
            bottom: 100
        }));
        // Only the width cut, 10% of it; the centred square.
        for window in [(10, 0, 190, 100), (50, 0, 150, 100)] {
            let (left, top, right, bottom) = window;
            assert!(
                windows.contains(&ContentBox {
                    left,
                    top,
                    right,
                    bottom
                }),
                "{window:?}"
            );
        }
        // None is the whole image, however small.
        assert!(crop_windows(10, 10).iter().all(|w| w.width() * w.height() < 100));
        // No window twice: the band is the 40% height window, a 4:3 picture's square its 25%
        // width window.
        for (width, height) in [(200, 100), (400, 300), (100, 100)] {
            let windows = crop_windows(width, height);
            let distinct: std::collections::HashSet<_> = windows
                .iter()
                .map(|w| (w.left, w.top, w.right, w.bottom))
                .collect();
            assert_eq!(distinct.len(), windows.len(), "{width}x{height}");
        }
    }

    #[test]
    fn overlay_windows_are_stored_windows_that_leave_out_corners_and_captions() {
        let windows = overlay_windows(200, 100);
        assert_eq!(windows.len(), 5);
        let stored = crop_windows(200, 100);
        assert!(windows.iter().all(|w| stored.contains(w)));
        // Each corner of the image is kept by exactly one window, and the corner windows cut
        // 40 × 20 px.
        for (x, y) in [(0, 0), (199, 0), (0, 99), (199, 99)] {
            let keeping = windows
                .iter()
                .filter(|w| (w.left..w.right).contains(&x) && (w.top..w.bottom).contains(&y))
                .count();
            assert_eq!(keeping, 1, "corner ({x}, {y})");
        }
        assert_eq!(
            windows
                .iter()
                .filter(|w| (w.width(), w.height()) == (160, 80))
                .count(),
            4
        );
        // The band between the top and bottom captions: full width, a fifth off each end.
        assert!(windows.contains(&ContentBox {
            left: 0,
            top: 20,
            right: 200,
            bottom: 80
        }));
        assert!(overlay_windows(2, 2).is_empty());
    }
}
