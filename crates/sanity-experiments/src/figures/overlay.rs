//! `sanity explain`'s figure, after the seed lesson's `plot_map` / `plot_map2`: the image in
//! gray, then each method's map in `jet` at alpha 0.5 over it, each with its colour bar, and
//! the title `Class: <label>. Pred = <prediction>`.

use super::colormap::ColorMap;
use super::raster::{Scale, blend, colorize, resample};
use super::{DrawResult, blit, colorbar, png, text};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The opacity of a map over its image (the lesson's `alpha=0.5`).
pub const ALPHA: f64 = 0.5;

/// One figure: an image and the maps drawn over it.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// The title line.
    pub title: String,
    /// The image as one gray plane, `[h, w]`.
    pub image: Vec<f32>,
    /// Its shape.
    pub image_shape: [usize; 2],
    /// One panel per method: the method's name, its map as one plane, and the plane's shape
    /// `[h, w]`.
    pub panels: Vec<(String, Vec<f32>, [usize; 2])>,
}

/// Pixel geometry of an [`Overlay`] figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlayLayout {
    /// Side of a panel.
    pub panel: u32,
}

impl OverlayLayout {
    const TOP: u32 = 70;
    const LEFT: u32 = 16;
    /// Room for a panel's colour bar and its numbers.
    const BAR: u32 = 86;

    /// The top-left pixel of panel `k` (0: the image, then the methods).
    pub fn panel_origin(&self, k: usize) -> (i32, i32) {
        ((Self::LEFT + k as u32 * (self.panel + Self::BAR)) as i32, Self::TOP as i32)
    }

    /// The figure's size with `methods` map panels.
    pub fn size(&self, methods: usize) -> (u32, u32) {
        (Self::LEFT + (methods as u32 + 1) * (self.panel + Self::BAR), Self::TOP + self.panel + 16)
    }
}

/// Draws `overlay` as PNG with panels of `panel` pixels.
pub fn render(overlay: &Overlay, panel: u32) -> DrawResult<Vec<u8>> {
    let layout = OverlayLayout { panel };
    let side = panel as usize;
    let gray = resample(&overlay.image, overlay.image_shape, [side, side]);
    let background = colorize(&gray, Scale::min_max(&gray), ColorMap::Gray);
    png(layout.size(overlay.panels.len()), |root| {
        root.draw(&Text::new(overlay.title.clone(), (OverlayLayout::LEFT as i32, 12), text(20)))?;
        let header = Pos::new(HPos::Center, VPos::Bottom);
        let (x, y) = layout.panel_origin(0);
        root.draw(&Text::new("image", (x + panel as i32 / 2, y - 6), text(15).pos(header)))?;
        blit(root, (x, y), (panel, panel), background.clone())?;
        for (k, (method, map, shape)) in overlay.panels.iter().enumerate() {
            let (x, y) = layout.panel_origin(k + 1);
            root.draw(&Text::new(method.clone(), (x + panel as i32 / 2, y - 6), text(15).pos(header)))?;
            let scale = Scale::min_max(map);
            let plane = resample(map, *shape, [side, side]);
            let over = colorize(&plane, scale, ColorMap::Jet);
            blit(root, (x, y), (panel, panel), blend(&background, &over, ALPHA))?;
            colorbar(root, (x + panel as i32 + 6, y), (14, panel), scale, ColorMap::Jet, 12)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hottest_pixel_is_drawn_where_it_is_in_the_map() -> DrawResult {
        // A black image and an 8 x 8 map whose only hot pixel is at (row 2, column 5).
        let mut map = vec![0.0f32; 64];
        map[2 * 8 + 5] = 1.0;
        let overlay = Overlay {
            title: "Class: 1. Pred = 0.9".into(),
            image: vec![0.0; 64],
            image_shape: [8, 8],
            panels: vec![("gradient".into(), map, [8, 8])],
        };
        let bytes = render(&overlay, 64)?;
        let image = image::load_from_memory(&bytes)?.to_rgb8();
        let (x0, y0) = OverlayLayout { panel: 64 }.panel_origin(1);
        // jet(1) = (127, 0, 0) at alpha 0.5 over black; each map pixel is 8 x 8 screen pixels.
        let hot = [64u8, 0, 0];
        let mut found = Vec::new();
        for y in 0..64 {
            for x in 0..64 {
                if image.get_pixel(x0 as u32 + x, y0 as u32 + y).0 == hot {
                    found.push((y / 8, x / 8));
                }
            }
        }
        assert_eq!(found.len(), 64, "one map pixel is 8 x 8 screen pixels");
        assert!(found.iter().all(|&p| p == (2, 5)), "{found:?}");
        Ok(())
    }
}
