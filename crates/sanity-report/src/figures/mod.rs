//! Figures drawn with `plotters` (PNG through its bitmap backend, SVG for the charts), with
//! an embedded font (DejaVu Sans, see `assets/DejaVuSans-LICENSE.txt`) so that the same run
//! gives the same bytes on every machine.
//!
//! - [`grid`]: maps in rows (methods) and columns (models): the cascade grid of Adebayo et al.
//!   (2018), Figure 2, and the data randomisation and random logit maps;
//! - [`overlay`]: `sanity explain`'s image with each method's map over it (the seed lesson's
//!   `plot_map`);
//! - [`charts`]: similarity-vs-stage curves, per-method scores with their intervals and the
//!   method-agreement matrix.

pub mod charts;
pub mod colormap;
pub mod grid;
pub mod overlay;
pub mod raster;

use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

/// Errors of drawing (plotters' own, boxed).
pub type DrawResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// DejaVu Sans (Bitstream Vera licence; see assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the embedded font as plotters' `sans-serif`, once.
fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            // The embedded bytes are a valid font; a failure would show as missing text.
            let _ = plotters::style::register_font("sans-serif", style, FONT);
        }
    });
}

/// The text style of a figure: sans-serif at `size` pixels.
pub fn text(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

/// The width in pixels of `s` written in [`text`]`(size)`, measured with the embedded font
/// (a figure is made wide enough for its title, so the title is never cut).
pub fn text_width(s: &str, size: u32) -> u32 {
    register_fonts();
    // The embedded font measures every string; 0.6 em per character is the fallback.
    text(size).font.box_size(s).map_or((s.chars().count() as u32 * size * 3).div_ceil(5), |(w, _)| w)
}

/// Draws a `width x height` PNG with `draw` on a white background; returns the PNG bytes.
pub fn png(
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
) -> DrawResult<Vec<u8>> {
    register_fonts();
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present()?;
    }
    encode_png(&pixels, width, height)
}

/// Draws a `width x height` SVG with `draw` on a white background.
pub fn svg(
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
) -> DrawResult<String> {
    register_fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(out)
}

/// PNG bytes of RGB pixels.
pub fn encode_png(pixels: &[u8], width: u32, height: u32) -> DrawResult<Vec<u8>> {
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes).write_image(
        pixels,
        width,
        height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(bytes)
}

/// Draws RGB `pixels` (`size` = width, height) with their top-left corner at `at` (pixels of
/// `area`).
pub fn blit<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    size: (u32, u32),
    pixels: Vec<u8>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let element = BitMapElement::with_owned_buffer(at, size, pixels).ok_or("a bitmap of the wrong size")?;
    area.draw(&element)?;
    Ok(())
}

/// A vertical colour bar at `at`, `size` pixels, from `scale`'s low end (bottom) to its high
/// end (top), with the two end values and the middle written to its right.
pub fn colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    (width, height): (u32, u32),
    scale: raster::Scale,
    colormap: colormap::ColorMap,
    font: u32,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = scale.ends();
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for row in 0..height {
        let t = 1.0 - (f64::from(row) + 0.5) / f64::from(height);
        let color = colormap.color(t);
        for _ in 0..width {
            pixels.extend_from_slice(&color);
        }
    }
    blit(area, at, (width, height), pixels)?;
    area.draw(&Rectangle::new([(at.0, at.1), (at.0 + width as i32, at.1 + height as i32)], BLACK.stroke_width(1)))?;
    let x = at.0 + width as i32 + 4;
    let style = text(font).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Left,
        plotters::style::text_anchor::VPos::Center,
    ));
    for (value, y) in [(hi, at.1), ((lo + hi) / 2.0, at.1 + height as i32 / 2), (lo, at.1 + height as i32)] {
        area.draw(&Text::new(number(value), (x, y), style.clone()))?;
    }
    Ok(())
}

/// A number as a figure prints it: 3 significant digits, no trailing zeros.
pub fn number(v: f64) -> String {
    // Axis ticks computed as sums land a rounding error away from zero.
    let v = if v.abs() < 1e-12 { 0.0 } else { v };
    if v == 0.0 || !v.is_finite() {
        return if v.is_nan() { "n/a".into() } else { format!("{v}") };
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-3..5).contains(&magnitude) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.123456), "0.123");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(-0.5), "-0.5");
        assert_eq!(number(123.456), "123");
        assert_eq!(number(1.5e-6), "1.50e-6");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(-5.55e-17), "0");
    }
}
