//! Finding the picture in a page: a screenshot of a web page, a chat or an app's feed, where
//! the flagged picture sits among text, buttons and bars.
//!
//! Trimming ([`super::trim`]) removes flat margins from the outside in, so it stops at the
//! first line that carries text beside the picture. Here the page is read as a whole instead:
//! its background is the colour most of it has; a picture is a large block that is almost
//! nowhere that colour. The image is cut into small cells, a cell is "ink" when most of its
//! pixels are off the background, and the ink cells are grouped into connected blocks. Text
//! rarely fills half a cell, so lines of it seldom form blocks; bars and buttons form thin or
//! small ones. The largest block that is dense (a rectangle nearly filled with ink) and big
//! enough is the picture; its edges are then set to the pixel. Colours compare as in trimming
//! (the same tolerance: JPEG ringing and anti-aliasing wobble flat areas).

use super::trim::{ContentBox, close, median_colour};

/// A page: at least this share of the image is its background colour. A photo's own most
/// common colour rarely covers this much exactly, so photos are left alone.
const MIN_BACKGROUND: f32 = 0.20;
/// The background colour is judged on every this-many-th pixel (a prime step, so the sample
/// does not keep to a few columns of the image).
const SAMPLE_STEP: usize = 7;
/// Cells per side of the longer edge.
const CELLS: usize = 160;
/// A block is a picture when ink fills this share of its bounding rectangle.
const MIN_FILL: f32 = 0.80;
/// … and when that rectangle covers at least this share of the image …
const MIN_AREA: f32 = 0.08;
/// … but not more than this (then it is the whole image, with margins trimming handles).
const MAX_AREA: f32 = 0.90;
/// … and each side spans at least this many cells (a bar or a line of text is thinner).
const MIN_SIDE_CELLS: usize = 12;

/// The largest picture in a page-like image, or `None` when the image is not a page or holds
/// no picture worth hashing apart.
pub fn picture_box(rgb: &[u8], width: usize, height: usize) -> Option<ContentBox> {
    if width < 64 || height < 64 || rgb.len() != width * height * 3 {
        return None;
    }
    let background = background_colour(rgb)?;
    let is_ink = |x: usize, y: usize| {
        let at = (y * width + x) * 3;
        !close([rgb[at], rgb[at + 1], rgb[at + 2]], background)
    };
    let grid = Grid::new(width, height, &is_ink);
    let block = grid.largest_dense_block()?;
    let area = grid.to_pixels(block);
    refine(area, width, height, &is_ink)
}

/// The most common colour (in bins of 8 levels per channel, refined to the median of its
/// bin's pixels), if it covers enough of the image to be a page's background.
fn background_colour(rgb: &[u8]) -> Option<[u8; 3]> {
    let pixels = rgb.chunks_exact(3);
    let total = pixels.len();
    // A sample of pixels (every SAMPLE_STEP-th) is plenty to find the most common colour.
    let sample = pixels.step_by(SAMPLE_STEP);
    let bin = |p: &[u8]| ((p[0] as usize >> 3) << 10) | ((p[1] as usize >> 3) << 5) | (p[2] as usize >> 3);
    let mut counts = vec![0u32; 1 << 15];
    for pixel in sample.clone() {
        counts[bin(pixel)] += 1;
    }
    let (mode, _) = counts.iter().enumerate().max_by_key(|(_, count)| **count)?;
    let colour = median_colour(sample.filter(|p| bin(p) == mode).map(|p| [p[0], p[1], p[2]]));
    let near = rgb
        .chunks_exact(3)
        .step_by(SAMPLE_STEP)
        .filter(|p| close([p[0], p[1], p[2]], colour))
        .count();
    (near as f32 >= MIN_BACKGROUND * total.div_ceil(SAMPLE_STEP) as f32).then_some(colour)
}

/// Ink cells of the image: cell `(i, j)` covers pixels `i*size..(i+1)*size` across and down.
struct Grid {
    size: usize,
    columns: usize,
    rows: usize,
    ink: Vec<bool>,
}

/// A block's bounding rectangle in cells (`left..right`, `top..bottom`) and its ink cells.
#[derive(Clone, Copy, Debug)]
struct Block {
    left: usize,
    top: usize,
    right: usize,
    bottom: usize,
    cells: usize,
}

impl Block {
    fn area(&self) -> usize {
        (self.right - self.left) * (self.bottom - self.top)
    }
}

impl Grid {
    fn new(width: usize, height: usize, is_ink: &impl Fn(usize, usize) -> bool) -> Grid {
        let size = width.max(height).div_ceil(CELLS).max(1);
        let (columns, rows) = (width / size, height / size);
        // At most 4×4 samples a cell (a cell is ink or page over most of its area, so that
        // tells), and a huge image costs no more than a screenshot.
        let step = size.div_ceil(4);
        let samples = size.div_ceil(step).pow(2);
        let mut ink = vec![false; columns * rows];
        for row in 0..rows {
            for column in 0..columns {
                let mut count = 0;
                for y in (row * size..(row + 1) * size).step_by(step) {
                    for x in (column * size..(column + 1) * size).step_by(step) {
                        count += usize::from(is_ink(x, y));
                    }
                }
                ink[row * columns + column] = 2 * count > samples;
            }
        }
        Grid {
            size,
            columns,
            rows,
            ink,
        }
    }

    /// The connected block of ink cells (4-neighbours) with the largest rectangle among those
    /// dense and big enough to be a picture.
    fn largest_dense_block(&self) -> Option<Block> {
        let total = (self.columns * self.rows) as f32;
        let mut seen = vec![false; self.ink.len()];
        let mut stack = Vec::new();
        let mut best: Option<Block> = None;
        for start in 0..self.ink.len() {
            if !self.ink[start] || seen[start] {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            let (column, row) = (start % self.columns, start / self.columns);
            let mut block = Block {
                left: column,
                top: row,
                right: column + 1,
                bottom: row + 1,
                cells: 0,
            };
            while let Some(cell) = stack.pop() {
                let (column, row) = (cell % self.columns, cell / self.columns);
                block.cells += 1;
                block.left = block.left.min(column);
                block.right = block.right.max(column + 1);
                block.top = block.top.min(row);
                block.bottom = block.bottom.max(row + 1);
                let neighbours = [
                    (column > 0).then(|| cell - 1),
                    (column + 1 < self.columns).then(|| cell + 1),
                    (row > 0).then(|| cell - self.columns),
                    (row + 1 < self.rows).then(|| cell + self.columns),
                ];
                for next in neighbours.into_iter().flatten() {
                    if self.ink[next] && !seen[next] {
                        seen[next] = true;
                        stack.push(next);
                    }
                }
            }
            let area = block.area() as f32;
            let picture = block.right - block.left >= MIN_SIDE_CELLS
                && block.bottom - block.top >= MIN_SIDE_CELLS
                && block.cells as f32 >= MIN_FILL * area
                && (MIN_AREA * total..=MAX_AREA * total).contains(&area);
            if picture && best.is_none_or(|b| block.area() > b.area()) {
                best = Some(block);
            }
        }
        best
    }

    fn to_pixels(&self, block: Block) -> ContentBox {
        ContentBox {
            left: block.left * self.size,
            top: block.top * self.size,
            right: block.right * self.size,
            bottom: block.bottom * self.size,
        }
    }
}

/// Sets each edge of a block found on the grid to the pixel: within a cell of the rough edge,
/// the outermost line that is mostly ink.
fn refine(
    rough: ContentBox,
    width: usize,
    height: usize,
    is_ink: &impl Fn(usize, usize) -> bool,
) -> Option<ContentBox> {
    let slack = rough.width().max(rough.height()) / CELLS + 2;
    let (left, right) = (rough.left, rough.right);
    let (top, bottom) = (rough.top, rough.bottom);
    let row_ink = |y: usize| (left..right).filter(|&x| is_ink(x, y)).count() * 2 > right - left;
    let column_ink = |x: usize| (top..bottom).filter(|&y| is_ink(x, y)).count() * 2 > bottom - top;
    // From a cell beyond the rough edge inwards, the first line mostly ink.
    let inward = |from: usize, to: usize, ink: &dyn Fn(usize) -> bool| -> Option<usize> {
        if from <= to {
            (from..=to).find(|&i| ink(i))
        } else {
            (to..=from).rev().find(|&i| ink(i))
        }
    };
    let min = |edge: usize| edge.saturating_sub(slack);
    let top = inward(min(top), (top + slack).min(height - 1), &row_ink)?;
    let bottom = inward(
        (bottom + slack).min(height) - 1,
        bottom.saturating_sub(slack),
        &row_ink,
    )? + 1;
    let left = inward(min(left), (left + slack).min(width - 1), &column_ink)?;
    let right = inward(
        (right + slack).min(width) - 1,
        right.saturating_sub(slack),
        &column_ink,
    )? + 1;
    (left < right && top < bottom).then_some(ContentBox {
        left,
        top,
        right,
        bottom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured picture of `w`×`h` (no flat areas), as packed RGB8.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let mut state = 7u32;
        (0..w * h * 3)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect()
    }

    /// A white page of `w`×`h` with `pixels` (`pw`×`ph`) pasted at (`x`, `y`).
    fn page(w: usize, h: usize, pixels: &[u8], (pw, ph): (usize, usize), (x, y): (usize, usize)) -> Vec<u8> {
        let mut rgb = vec![255u8; w * h * 3];
        for row in 0..ph {
            let to = ((y + row) * w + x) * 3;
            rgb[to..to + pw * 3].copy_from_slice(&pixels[row * pw * 3..(row + 1) * pw * 3]);
        }
        rgb
    }

    /// Paints a solid rectangle.
    fn bar(rgb: &mut [u8], w: usize, (x0, y0, x1, y1): (usize, usize, usize, usize), grey: u8) {
        for y in y0..y1 {
            for x in x0..x1 {
                rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].fill(grey);
            }
        }
    }

    #[test]
    fn the_picture_among_text_lines_and_a_title_bar_is_found_to_the_pixel() {
        let (w, h) = (900, 600);
        let photo = picture(437, 301);
        let mut rgb = page(w, h, &photo, (437, 301), (41, 133));
        bar(&mut rgb, w, (0, 0, w, 40), 220);
        // Lines of "text" beside the picture, and a heading above it.
        for i in 0..12 {
            bar(
                &mut rgb,
                w,
                (520, 140 + 24 * i, 520 + 300 - 13 * i, 150 + 24 * i),
                90,
            );
        }
        bar(&mut rgb, w, (41, 80, 400, 110), 30);
        assert_eq!(
            picture_box(&rgb, w, h),
            Some(ContentBox {
                left: 41,
                top: 133,
                right: 478,
                bottom: 434,
            })
        );
    }

    #[test]
    fn a_photo_and_a_page_of_text_have_no_picture_to_cut_out() {
        assert_eq!(picture_box(&picture(400, 300), 400, 300), None);
        let (w, h) = (600, 400);
        let mut text = vec![255u8; w * h * 3];
        for i in 0..15 {
            bar(&mut text, w, (30, 20 + 25 * i, 560, 31 + 25 * i), 40);
        }
        assert_eq!(picture_box(&text, w, h), None);
        // A picture that fills the page is the whole image: trimming's business.
        let full = page(500, 500, &picture(480, 480), (480, 480), (10, 10));
        assert_eq!(picture_box(&full, 500, 500), None);
    }

    #[test]
    fn a_small_picture_on_a_page_is_not_worth_hashing_apart() {
        let rgb = page(800, 800, &picture(150, 150), (150, 150), (300, 300));
        assert_eq!(picture_box(&rgb, 800, 800), None);
    }
}
