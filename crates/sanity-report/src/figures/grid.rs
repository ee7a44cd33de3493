//! A grid of maps: rows are methods, columns are models (the input image, the original model,
//! then each randomised stage): the layout of Adebayo et al. (2018), Figure 2.

use super::colormap::ColorMap;
use super::raster::{OUTLINE, Scale, colorize, outline, resample, solid, with_outline};
use super::{DrawResult, blit, colorbar, png, text, text_width};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One cell: a single-channel plane and how it is coloured.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// Values, `[h, w]` row-major.
    pub plane: Vec<f32>,
    /// `[h, w]`.
    pub shape: [usize; 2],
    /// The colour scale.
    pub scale: Scale,
    /// The colour map.
    pub colormap: ColorMap,
}

/// A grid figure.
#[derive(Debug, Clone, PartialEq)]
pub struct MapGrid {
    /// The title line.
    pub title: String,
    /// Row labels (method names, as in the CSV).
    pub rows: Vec<String>,
    /// Column headers.
    pub columns: Vec<String>,
    /// `[row][column]`; None draws an empty cell marked `n/a` (a degenerate or missing map).
    pub cells: Vec<Vec<Option<Tile>>>,
    /// The colour bar drawn at the right when every map shares one scale.
    pub shared: Option<(Scale, ColorMap)>,
    /// A note under the title (how the maps are scaled).
    pub note: String,
    /// The image's ground-truth mask (`[h, w]`, inside above 0.5), outlined on every cell.
    pub mask: Option<(Vec<f32>, [usize; 2])>,
}

/// Pixel geometry of a [`MapGrid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    /// Side of a cell.
    pub cell: u32,
    /// Space between cells.
    pub gap: u32,
    /// Width of the row-label column.
    pub label_width: u32,
    /// Height above the first row (title, note and headers).
    pub top: u32,
    /// Width right of the last column (the colour bar).
    pub right: u32,
    /// The least width: that of the title and the note, so that neither is cut.
    pub min_width: u32,
}

impl GridLayout {
    /// The layout of `grid` with cells of `cell` pixels.
    pub fn of(grid: &MapGrid, cell: u32) -> Self {
        let longest = grid.rows.iter().map(|r| r.chars().count()).max().unwrap_or(0) as u32;
        let right = if grid.shared.is_some() { 90 } else { 12 };
        let min_width = 24 + text_width(&grid.title, 18).max(text_width(&grid.note, 13));
        GridLayout { cell, gap: 4, label_width: 16 + 9 * longest, top: 84, right, min_width }
    }

    /// The top-left pixel of cell (`row`, `column`).
    pub fn cell_origin(&self, row: usize, column: usize) -> (i32, i32) {
        let step = (self.cell + self.gap) as i32;
        (self.label_width as i32 + column as i32 * step, self.top as i32 + row as i32 * step)
    }

    /// The figure's size for `rows x columns` cells.
    pub fn size(&self, rows: usize, columns: usize) -> (u32, u32) {
        let step = self.cell + self.gap;
        ((self.label_width + columns as u32 * step + self.right).max(self.min_width), self.top + rows as u32 * step + 8)
    }
}

/// Draws `grid` as PNG with cells of `cell` pixels.
pub fn render(grid: &MapGrid, cell: u32) -> DrawResult<Vec<u8>> {
    let layout = GridLayout::of(grid, cell);
    let columns = grid.columns.len();
    png(layout.size(grid.rows.len(), columns), |root| {
        root.draw(&Text::new(grid.title.clone(), (12, 10), text(18)))?;
        root.draw(&Text::new(grid.note.clone(), (12, 36), text(13).color(&RGBColor(80, 80, 80))))?;
        let centered = Pos::new(HPos::Center, VPos::Bottom);
        for (j, header) in grid.columns.iter().enumerate() {
            let (x, _) = layout.cell_origin(0, j);
            let at = (x + cell as i32 / 2, layout.top as i32 - 6);
            root.draw(&Text::new(header.clone(), at, text(14).pos(centered)))?;
        }
        let left = Pos::new(HPos::Right, VPos::Center);
        let edge = grid.mask.as_ref().map(|(plane, shape)| outline(plane, *shape, cell as usize));
        for (i, (label, row)) in grid.rows.iter().zip(&grid.cells).enumerate() {
            let (_, y) = layout.cell_origin(i, 0);
            let at = (layout.label_width as i32 - 8, y + cell as i32 / 2);
            root.draw(&Text::new(label.clone(), at, text(14).pos(left)))?;
            for (j, tile) in row.iter().enumerate().take(columns) {
                let origin = layout.cell_origin(i, j);
                let side = cell as usize;
                match tile {
                    Some(tile) => {
                        let plane = resample(&tile.plane, tile.shape, [side, side]);
                        let mut rgb = colorize(&plane, tile.scale, tile.colormap);
                        if let Some(edge) = &edge {
                            rgb = with_outline(rgb, edge, OUTLINE);
                        }
                        blit(root, origin, (cell, cell), rgb)?;
                    }
                    None => {
                        blit(root, origin, (cell, cell), solid([235, 235, 235], side * side))?;
                        let at = (origin.0 + cell as i32 / 2, origin.1 + cell as i32 / 2);
                        let style = text(13).pos(Pos::new(HPos::Center, VPos::Center));
                        root.draw(&Text::new("n/a", at, style))?;
                    }
                }
            }
        }
        if let Some((scale, colormap)) = grid.shared {
            let (x, y) = layout.cell_origin(0, columns);
            let height = (cell * 2).min(layout.size(grid.rows.len(), 0).1.saturating_sub(layout.top + 16)).max(16);
            colorbar(root, (x + 8, y), (16, height), scale, colormap, 13)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_land_where_the_layout_says() -> DrawResult {
        // A 2 x 2 map whose top-left pixel is hot, in row 1, column 2 of a 2 x 3 grid.
        let hot = Tile {
            plane: vec![1.0, 0.0, 0.0, 0.0],
            shape: [2, 2],
            scale: Scale::Sequential { lo: 0.0, hi: 1.0 },
            colormap: ColorMap::Gray,
        };
        let cells = vec![vec![None, None, None], vec![None, None, Some(hot)]];
        let grid = MapGrid {
            title: "t".into(),
            rows: vec!["a".into(), "b".into()],
            columns: vec!["x".into(), "y".into(), "z".into()],
            cells,
            shared: None,
            note: String::new(),
            mask: None,
        };
        let bytes = render(&grid, 40)?;
        let image = image::load_from_memory(&bytes)?.to_rgb8();
        let layout = GridLayout::of(&grid, 40);
        assert_eq!(image.dimensions(), layout.size(2, 3));
        let (x, y) = layout.cell_origin(1, 2);
        // The hot quarter is white, the rest of the cell black.
        assert_eq!(image.get_pixel(x as u32 + 5, y as u32 + 5).0, [255, 255, 255]);
        assert_eq!(image.get_pixel(x as u32 + 25, y as u32 + 5).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(x as u32 + 5, y as u32 + 25).0, [0, 0, 0]);
        // Same input, same bytes.
        assert_eq!(render(&grid, 40)?, bytes);
        Ok(())
    }

    #[test]
    fn a_long_title_widens_the_figure_instead_of_being_cut() -> DrawResult {
        // The title of a one-column grid (issue 17 saw "image 1, class 8, prec").
        let grid = MapGrid {
            title: "cascading (top_down): image 1, class 8, predicted 8 (p = 0.993)".into(),
            rows: vec!["gradient".into()],
            columns: vec!["input".into()],
            cells: vec![vec![None]],
            shared: None,
            note: "each map on its own range".into(),
            mask: None,
        };
        let bytes = render(&grid, 32)?;
        let image = image::load_from_memory(&bytes)?.to_rgb8();
        let (width, _) = image.dimensions();
        assert!(width >= 12 + text_width(&grid.title, 18), "{width}");
        // Nothing is drawn in the title band's last 8 columns: the title ends inside.
        assert!((0..34).all(|y| (width - 8..width).all(|x| image.get_pixel(x, y).0 == [255, 255, 255])));
        Ok(())
    }
}
