//! Pictures derived from a flagged image, whose PDQ hashes a bank stores beside the image's
//! own so that edited re-uploads match with a plain hash lookup: the image turned and mirrored
//! exactly (PDQ's dihedral variants computed from the DCT only approximate those for most
//! image sizes), and sub-windows of it (PDQ moves past any threshold once a few percent of
//! the frame is cropped away).
//!
//! The cost is at add time and in memory: one more stored hash per derived picture. A check
//! still searches only the upload's own hashes.

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

/// Sub-windows of a `width`×`height` image: for each crop share, the window centred and the
/// windows in each of the four corners (the crop taken all from two adjacent sides).
pub fn crop_windows(width: usize, height: usize) -> Vec<ContentBox> {
    let mut windows = Vec::with_capacity(CROP_STEPS.len() * 5);
    for share in CROP_STEPS {
        let (dx, dy) = (
            (width as f32 * share).round() as usize,
            (height as f32 * share).round() as usize,
        );
        if dx == 0 || dy == 0 || dx >= width || dy >= height {
            continue;
        }
        let (w, h) = (width - dx, height - dy);
        let origins = [(dx / 2, dy / 2), (0, 0), (dx, 0), (0, dy), (dx, dy)];
        for (left, top) in origins {
            windows.push(ContentBox {
                left,
                top,
                right: left + w,
                bottom: top + h,
            });
        }
    }
    windows
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
    fn crop_windows_cover_centre_and_corners_within_the_image() {
        let windows = crop_windows(200, 100);
        assert_eq!(windows.len(), 40);
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
        assert!(
            crop_windows(10, 10)
                .iter()
                .all(|w| w.width() < 10 && w.height() < 10)
        );
    }
}
