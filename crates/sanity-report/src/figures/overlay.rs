//! `sanity explain`'s figure, after the seed lesson's `plot_map` / `plot_map2`: the image in
//! gray, then each method's map over it at opacity `alpha` (the lesson's 0.5), each with its
//! colour bar, and the title `Class: <label>. Pred = <prediction>`. Maps are drawn in a
//! diverging map centred on zero by default, so that zero is the same colour (white) in every
//! panel; the lesson's `jet` on each panel's own range is an option.

use super::colormap::ColorMap;
use super::raster::{OUTLINE, Scale, blend, colorize, outline, resample, with_outline};
use super::{DrawResult, blit, colorbar, png, text, text_width};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The default opacity of a map over its image (the lesson's `alpha=0.5`).
pub const ALPHA: f64 = 0.5;

/// How the maps of an overlay are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayColors {
    /// matplotlib's `bwr` over `±max|m|` of each panel: zero is white in every panel, signs
    /// are blue and red; a map without negative values uses the white-to-red half.
    #[default]
    Diverging,
    /// The seed lesson's `jet` over each panel's own min–max range (zero is a different colour
    /// in every panel).
    Jet,
}

impl OverlayColors {
    /// The scale and colour map of a panel's `map`.
    pub fn of(self, map: &[f32]) -> (Scale, ColorMap) {
        match self {
            OverlayColors::Jet => (Scale::min_max(map), ColorMap::Jet),
            OverlayColors::Diverging => {
                let max_abs = map.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
                let half = if max_abs > 0.0 { max_abs } else { 1.0 };
                (Scale::Diverging { center: 0.0, half }, ColorMap::Bwr)
            }
        }
    }
}

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
    /// How the maps are coloured.
    pub colors: OverlayColors,
    /// The maps' opacity over the image, 0 to 1.
    pub alpha: f64,
    /// The image's ground-truth mask (`[h, w]` as the image, inside above 0.5), outlined on
    /// the image and on every map.
    pub mask: Option<Vec<f32>>,
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

    /// The figure's size with `methods` map panels and the title `title`: wide enough for the
    /// panels and for the whole title.
    pub fn size(&self, methods: usize, title: &str) -> (u32, u32) {
        let panels = Self::LEFT + (methods as u32 + 1) * (self.panel + Self::BAR);
        (panels.max(2 * Self::LEFT + text_width(title, TITLE_SIZE)), Self::TOP + self.panel + 16)
    }
}

/// The title's font size.
const TITLE_SIZE: u32 = 20;

/// Draws `overlay` as PNG with panels of `panel` pixels.
pub fn render(overlay: &Overlay, panel: u32) -> DrawResult<Vec<u8>> {
    let layout = OverlayLayout { panel };
    let side = panel as usize;
    let gray = resample(&overlay.image, overlay.image_shape, [side, side]);
    let background = colorize(&gray, Scale::min_max(&gray), ColorMap::Gray);
    let edge = overlay.mask.as_ref().map(|m| outline(m, overlay.image_shape, side));
    let outlined = |rgb: Vec<u8>| match &edge {
        Some(edge) => with_outline(rgb, edge, OUTLINE),
        None => rgb,
    };
    png(layout.size(overlay.panels.len(), &overlay.title), |root| {
        root.draw(&Text::new(overlay.title.clone(), (OverlayLayout::LEFT as i32, 12), text(TITLE_SIZE)))?;
        let header = Pos::new(HPos::Center, VPos::Bottom);
        let (x, y) = layout.panel_origin(0);
        root.draw(&Text::new("image", (x + panel as i32 / 2, y - 6), text(15).pos(header)))?;
        blit(root, (x, y), (panel, panel), outlined(background.clone()))?;
        for (k, (method, map, shape)) in overlay.panels.iter().enumerate() {
            let (x, y) = layout.panel_origin(k + 1);
            root.draw(&Text::new(method.clone(), (x + panel as i32 / 2, y - 6), text(15).pos(header)))?;
            let (scale, colormap) = overlay.colors.of(map);
            let plane = resample(map, *shape, [side, side]);
            let over = colorize(&plane, scale, colormap);
            blit(root, (x, y), (panel, panel), outlined(blend(&background, &over, overlay.alpha)))?;
            colorbar(root, (x + panel as i32 + 6, y), (14, panel), scale, colormap, 12)?;
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
            colors: OverlayColors::Jet,
            alpha: ALPHA,
            mask: None,
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

    #[test]
    fn zero_is_white_in_every_diverging_panel_whatever_its_range() -> DrawResult {
        // A white image; two maps of very different ranges, each zero at pixel 0 and opaque.
        let positive: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let signed: Vec<f32> =
            (0..64).map(|i| (i as f32 - 32.0) * 0.001).map(|v| if v == -0.032 { 0.0 } else { v }).collect();
        let overlay = Overlay {
            title: "Class: 3. Pred = 3 (p = 0.980), a long title in a narrow figure".into(),
            image: vec![1.0; 64],
            image_shape: [8, 8],
            panels: vec![("a".into(), positive, [8, 8]), ("b".into(), signed, [8, 8])],
            colors: OverlayColors::default(),
            alpha: 1.0,
            mask: None,
        };
        let bytes = render(&overlay, 16)?;
        let image = image::load_from_memory(&bytes)?.to_rgb8();
        let layout = OverlayLayout { panel: 16 };
        for k in 1..=2 {
            let (x, y) = layout.panel_origin(k);
            // matplotlib's bwr(0.5) is (1, 0.996, 0.996): white to a byte.
            let pixel = image.get_pixel(x as u32, y as u32).0;
            assert!(pixel.iter().all(|&c| c >= 254), "panel {k}: zero is white, not {pixel:?}");
        }
        // The largest |value| is full red in the positive map, full blue at the signed map's
        // most negative pixel.
        let (x, y) = layout.panel_origin(1);
        assert_eq!(image.get_pixel(x as u32 + 15, y as u32 + 15).0, [255, 0, 0]);
        // The figure is wide enough for its title: nothing is drawn in the last 8 columns.
        let (width, _) = image.dimensions();
        assert!(width >= text_width(&overlay.title, 20));
        assert!((0..40).all(|y| (width - 8..width).all(|x| image.get_pixel(x, y).0 == [255, 255, 255])));
        Ok(())
    }
}
