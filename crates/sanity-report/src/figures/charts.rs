//! Charts of a run's summary: similarity against randomisation stage (Adebayo et al. 2018,
//! Figures 3 and 4), one score per method with its interval (single-stage tests), and the
//! method-agreement matrix. Each chart is drawn on any plotters backend (PNG and SVG).

use super::colormap::{ColorMap, method_color};
use super::raster::Scale;
use super::{DrawResult, colorbar, number, text};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A chart that draws on any plotters backend (PNG and SVG alike).
pub trait Chart {
    /// Its size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws it on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// A mean with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The mean.
    pub mean: f64,
    /// The interval, when there is one.
    pub ci: Option<(f64, f64)>,
}

/// One method's line in a curve panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The method (as in the CSV).
    pub method: String,
    /// (x position, estimate); x indexes [`Curves::x_labels`].
    pub points: Vec<(usize, Estimate)>,
    /// The two-random-models floor of this method (a dash in the floor strip).
    pub random_models: Option<f64>,
    /// The random-map floor of this method (a cross in the floor strip).
    pub random_map: Option<f64>,
    /// Of the images, how many have a degenerate map of their own under the trained model
    /// (left out of every stage), and how many there are; None when none is.
    pub own_empty: Option<(usize, usize)>,
}

/// The note of a method whose own maps are degenerate for some images.
fn own_empty_note((empty, of): (usize, usize)) -> String {
    format!("own maps empty: {empty} of {of}")
}

/// The floor strip right of the last stage: each method's floors in a column of its own, so
/// that floors at the same value (every method's random map near 0) stay apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloorStrip {
    /// The x of the first method's column.
    pub start: f64,
    /// The distance between two methods' columns.
    pub step: f64,
}

impl FloorStrip {
    /// The strip right of `stages` stages (at x = 0 .. stages − 1) for `methods` methods.
    pub fn after(stages: usize, methods: usize) -> Self {
        let step = 0.8 / methods.max(1) as f64;
        Self { start: (stages.max(1) - 1) as f64 + 0.6 + step / 2.0, step }
    }

    /// The x of method `i`'s column.
    pub fn column(&self, i: usize) -> f64 {
        self.start + i as f64 * self.step
    }

    /// The right end of the strip.
    pub fn end(&self, methods: usize) -> f64 {
        self.column(methods.max(1) - 1) + self.step / 2.0 + 0.1
    }
}

/// One metric's panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel<T> {
    /// The metric (the y axis).
    pub metric: String,
    /// Its content.
    pub content: T,
}

/// Similarity-vs-stage curves.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    /// The title line.
    pub title: String,
    /// The x axis's description.
    pub x_desc: String,
    /// The stage names; index = x position.
    pub x_labels: Vec<String>,
    /// One panel per metric.
    pub panels: Vec<Panel<Vec<Series>>>,
    /// What the bands are (`95% CI of the mean over 3 draws and the images`).
    pub ci: String,
    /// What the floor strip's dash and cross stand for (`two random models`, `random map`).
    pub floors: [&'static str; 2],
}

/// Width of one chart panel.
const PANEL_W: u32 = 520;
/// Height of one chart panel.
const PANEL_H: u32 = 420;
/// Height of the title strip.
const TITLE_H: u32 = 44;
/// Width of the legend strip.
const LEGEND_W: u32 = 250;

/// The size of a figure of `panels` chart panels side by side, with a legend strip.
fn chart_size(panels: usize) -> (u32, u32) {
    (PANEL_W * panels.max(1) as u32 + LEGEND_W, PANEL_H + TITLE_H)
}

/// A whole figure's drawing area on backend `DB`.
pub type Area<DB> = DrawingArea<DB, Shift>;

/// Splits `root` into the title strip, the panels and the legend strip.
fn frame<DB: DrawingBackend>(root: &Area<DB>, title: &str, panels: usize) -> DrawResult<(Vec<Area<DB>>, Area<DB>)>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    root.draw(&Text::new(title.to_string(), (12, 12), text(18)))?;
    let (_, body) = root.split_vertically(TITLE_H);
    let (charts, legend) = body.split_horizontally(PANEL_W * panels.max(1) as u32);
    Ok((charts.split_evenly((1, panels.max(1))), legend))
}

/// The y range of a panel: its values, widened to include 0 and 1 for bounded similarities.
fn y_range(values: impl Iterator<Item = f64>, metric: &str) -> (f64, f64) {
    let (mut lo, mut hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if sanity_metrics::MetricSpec::peaks_at_one(metric) {
        lo = lo.min(0.0);
        hi = hi.max(1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// The axes of a panel with categories along x (one per label, at 0, 1, ...) and the metric's
/// mean and CI up y: the curves' stages, the scores' methods.
struct CategoryAxes<'l> {
    /// The categories, written rotated below the axis.
    labels: &'l [String],
    /// The x range.
    x: (f64, f64),
    /// The y range.
    y: (f64, f64),
    /// Pixels below the axis for the labels.
    label_room: u32,
    /// What the x axis shows, if it needs saying.
    x_desc: Option<&'l str>,
}

impl CategoryAxes<'_> {
    /// Draws the axes in `area` (the labels on `root`) and returns the chart to draw into.
    fn draw<'a, DB: DrawingBackend>(
        &self,
        root: &Area<DB>,
        area: &'a Area<DB>,
        metric: &str,
    ) -> DrawResult<
        ChartContext<
            'a,
            DB,
            Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
        >,
    >
    where
        DB::ErrorType: 'static,
    {
        let mut chart = ChartBuilder::on(area)
            .caption(metric, text(15))
            .margin(12)
            .x_label_area_size(self.label_room)
            .y_label_area_size(60)
            .build_cartesian_2d(self.x.0..self.x.1, self.y.0..self.y.1)?;
        let mut mesh = chart.configure_mesh();
        mesh.disable_x_mesh()
            .x_labels(0)
            .y_desc(format!("{metric} (mean, 95% CI)"))
            .y_label_formatter(&|y| number(*y))
            .y_label_style(text(12))
            .axis_desc_style(text(14))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225));
        if let Some(desc) = self.x_desc {
            mesh.x_desc(desc);
        }
        mesh.draw()?;
        let ticks: Vec<(i32, i32)> =
            (0..self.labels.len()).map(|i| chart.backend_coord(&(i as f64, self.y.0))).collect();
        category_labels(root, &ticks, self.labels)?;
        Ok(chart)
    }
}

/// Writes `labels` downwards (rotated) below the axis points `ticks` (backend pixels), with
/// a tick mark at each.
fn category_labels<DB: DrawingBackend>(root: &Area<DB>, ticks: &[(i32, i32)], labels: &[String]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let style = text(12).transform(FontTransform::Rotate90).pos(Pos::new(HPos::Left, VPos::Center));
    for (&(x, y), label) in ticks.iter().zip(labels) {
        root.draw(&PathElement::new(vec![(x, y), (x, y + 5)], BLACK.stroke_width(1)))?;
        root.draw(&Text::new(label.clone(), (x, y + 8), style.clone()))?;
    }
    Ok(())
}

/// Draws the curves' legend: one line per method in its colour, then the line styles of the
/// floors.
fn curves_legend<DB: DrawingBackend>(area: &Area<DB>, methods: &[&Series], ci: &str, floors: [&str; 2]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let left = Pos::new(HPos::Left, VPos::Center);
    let mut y = 60;
    for (i, series) in methods.iter().enumerate() {
        let [r, g, b] = method_color(i);
        area.draw(&PathElement::new(vec![(10, y), (40, y)], RGBColor(r, g, b).stroke_width(3)))?;
        area.draw(&Text::new(series.method.clone(), (48, y), text(14).pos(left)))?;
        if let Some(counts) = series.own_empty {
            y += 16;
            let red = RGBColor(180, 30, 30);
            area.draw(&Text::new(own_empty_note(counts), (48, y), text(12).color(&red).pos(left)))?;
        }
        y += 22;
    }
    y += 10;
    let gray = RGBColor(90, 90, 90);
    area.draw(&Text::new("floors, right of the stages,", (10, y), text(12).pos(left)))?;
    y += 16;
    area.draw(&Text::new("a column per method, in its colour:", (10, y), text(12).pos(left)))?;
    y += 20;
    area.draw(&PathElement::new(vec![(18, y), (32, y)], gray.stroke_width(3)))?;
    area.draw(&Text::new(floors[0], (48, y), text(13).pos(left)))?;
    y += 20;
    area.draw(&Cross::new((25, y), 4, gray.stroke_width(2)))?;
    area.draw(&Text::new(floors[1], (48, y), text(13).pos(left)))?;
    // The band's description, wrapped to the strip's width.
    let mut line = String::new();
    for word in format!("band: {ci}").split(' ') {
        let longer = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
        if !line.is_empty() && crate::figures::text_width(&longer, 12) > LEGEND_W - 20 {
            y += 16;
            area.draw(&Text::new(std::mem::take(&mut line), (10, y), text(12).pos(left)))?;
            line = word.to_string();
        } else {
            line = longer;
        }
    }
    y += 16;
    area.draw(&Text::new(line, (10, y), text(12).pos(left)))?;
    Ok(())
}

/// Draws similarity-vs-stage curves: per panel one line per method, its CI band, and its
/// floors in the [`FloorStrip`] right of the stages; a panel names the methods it has no
/// scores of.
impl Chart for Curves {
    fn size(&self) -> (u32, u32) {
        chart_size(self.panels.len())
    }

    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (areas, legend_area) = frame(root, &self.title, self.panels.len())?;
        let n = self.x_labels.len().max(1);
        let methods = self.panels.iter().map(|p| p.content.len()).max().unwrap_or(0);
        let strip = FloorStrip::after(n, methods);
        for (area, panel) in areas.iter().zip(&self.panels) {
            let values = panel.content.iter().flat_map(|s| {
                let points = s
                    .points
                    .iter()
                    .flat_map(|(_, e)| [Some(e.mean), e.ci.map(|c| c.0), e.ci.map(|c| c.1)].into_iter().flatten());
                points.chain(s.random_models).chain(s.random_map).collect::<Vec<_>>()
            });
            let (lo, hi) = y_range(values, &panel.metric);
            let x = (-0.3, strip.end(methods));
            let axes =
                CategoryAxes { labels: &self.x_labels, x, y: (lo, hi), label_room: 90, x_desc: Some(&self.x_desc) };
            let mut chart = axes.draw(root, area, &panel.metric)?;
            let empty: Vec<&str> =
                panel.content.iter().filter(|s| s.points.is_empty()).map(|s| s.method.as_str()).collect();
            if !empty.is_empty() {
                let note = format!("no scores: {}", empty.join(", "));
                let red = RGBColor(180, 30, 30);
                area.draw(&Text::new(note, (80, 36), text(13).color(&red)))?;
            }
            for (i, series) in panel.content.iter().enumerate() {
                let [r, g, b] = method_color(i);
                let color = RGBColor(r, g, b);
                let band: Vec<(f64, f64, f64)> =
                    series.points.iter().filter_map(|(x, e)| e.ci.map(|(l, h)| (*x as f64, l, h))).collect();
                if band.len() >= 2 {
                    let mut outline: Vec<(f64, f64)> = band.iter().map(|&(x, _, h)| (x, h)).collect();
                    outline.extend(band.iter().rev().map(|&(x, l, _)| (x, l)));
                    chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.15).filled())))?;
                }
                let line: Vec<(f64, f64)> = series.points.iter().map(|(x, e)| (*x as f64, e.mean)).collect();
                chart.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?;
                chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                let column = strip.column(i);
                let half = strip.step * 0.35;
                if let Some(v) = series.random_models {
                    let dash = vec![(column - half, v), (column + half, v)];
                    chart.draw_series(std::iter::once(PathElement::new(dash, color.stroke_width(3))))?;
                }
                if let Some(v) = series.random_map {
                    chart.draw_series(std::iter::once(Cross::new((column, v), 4, color.stroke_width(2))))?;
                }
            }
            let (left, bottom) = chart.backend_coord(&(strip.column(0) - strip.step / 2.0, lo));
            let style = text(12).pos(Pos::new(HPos::Left, VPos::Top));
            root.draw(&Text::new("floors", (left, bottom + 8), style))?;
        }
        let methods: Vec<&Series> = self.panels.first().map(|p| p.content.iter().collect()).unwrap_or_default();
        curves_legend(&legend_area, &methods, &self.ci, self.floors)
    }
}

/// One method's score in a single-stage test, with its controls.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodScore {
    /// The method.
    pub method: String,
    /// The test's score.
    pub estimate: Option<Estimate>,
    /// The repeat ceiling.
    pub repeat: Option<f64>,
    /// The two-random-models floor.
    pub random_models: Option<f64>,
    /// The random-map floor.
    pub random_map: Option<f64>,
    /// As [`Series::own_empty`].
    pub own_empty: Option<(usize, usize)>,
}

/// Per-method scores of a single-stage test (data randomisation, random logit).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The title line.
    pub title: String,
    /// One panel per metric.
    pub panels: Vec<Panel<Vec<MethodScore>>>,
}

/// Draws per-method scores: the mean as a dot with its CI as a bar; the ceiling (repeat) as
/// a gray triangle, the floors as a gray dash (two random models) and a gray cross (random map).
impl Chart for Scores {
    fn size(&self) -> (u32, u32) {
        chart_size(self.panels.len())
    }

    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (areas, legend_area) = frame(root, &self.title, self.panels.len())?;
        for (area, panel) in areas.iter().zip(&self.panels) {
            let n = panel.content.len().max(1);
            let values = panel.content.iter().flat_map(|m| {
                let e = m.estimate.iter().flat_map(|e| [Some(e.mean), e.ci.map(|c| c.0), e.ci.map(|c| c.1)]).flatten();
                e.chain(m.repeat).chain(m.random_models).chain(m.random_map).collect::<Vec<_>>()
            });
            let (lo, hi) = y_range(values, &panel.metric);
            let names: Vec<String> = panel
                .content
                .iter()
                .map(|m| match m.own_empty {
                    Some(counts) => format!("{} ({})", m.method, own_empty_note(counts)),
                    None => m.method.clone(),
                })
                .collect();
            let x = (-0.5, n as f64 - 0.5);
            let axes = CategoryAxes { labels: &names, x, y: (lo, hi), label_room: 150, x_desc: None };
            let mut chart = axes.draw(root, area, &panel.metric)?;
            let gray = RGBColor(90, 90, 90);
            for (i, m) in panel.content.iter().enumerate() {
                let x = i as f64;
                let [r, g, b] = method_color(i);
                let color = RGBColor(r, g, b);
                if let Some(e) = m.estimate {
                    if let Some((l, h)) = e.ci {
                        chart.draw_series(LineSeries::new(vec![(x, l), (x, h)], color.stroke_width(3)))?;
                    }
                    chart.draw_series(std::iter::once(Circle::new((x, e.mean), 5, color.filled())))?;
                }
                if let Some(v) = m.repeat {
                    chart.draw_series(std::iter::once(TriangleMarker::new((x + 0.25, v), 5, gray.filled())))?;
                }
                if let Some(v) = m.random_models {
                    chart.draw_series(LineSeries::new(vec![(x - 0.35, v), (x - 0.15, v)], gray.stroke_width(2)))?;
                }
                if let Some(v) = m.random_map {
                    chart.draw_series(std::iter::once(Cross::new((x + 0.25, v), 4, gray.stroke_width(2))))?;
                }
            }
        }
        let left = Pos::new(HPos::Left, VPos::Center);
        let gray = RGBColor(90, 90, 90);
        legend_area.draw(&Circle::new((25, 60), 5, BLACK.filled()))?;
        legend_area.draw(&Text::new("mean, bar: 95% CI", (48, 60), text(13).pos(left)))?;
        legend_area.draw(&TriangleMarker::new((25, 84), 5, gray.filled()))?;
        legend_area.draw(&Text::new("repeat (ceiling)", (48, 84), text(13).pos(left)))?;
        legend_area.draw(&PathElement::new(vec![(15, 108), (35, 108)], gray.stroke_width(2)))?;
        legend_area.draw(&Text::new("two random models (floor)", (48, 108), text(13).pos(left)))?;
        legend_area.draw(&Cross::new((25, 132), 4, gray.stroke_width(2)))?;
        legend_area.draw(&Text::new("random map (floor)", (48, 132), text(13).pos(left)))?;
        Ok(())
    }
}

/// The method-agreement matrix of one metric: `values[i][j]` is the mean score of method `i`
/// against method `j` (None: not compared).
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// The title line.
    pub title: String,
    /// The methods, in row and column order.
    pub methods: Vec<String>,
    /// One panel per metric: the matrix.
    pub panels: Vec<Panel<Vec<Vec<Option<f64>>>>>,
}

/// Side of a matrix cell.
const CELL: u32 = 64;

/// Width of the row labels of an agreement matrix.
fn label_width(agreement: &Agreement) -> u32 {
    16 + 8 * agreement.methods.iter().map(|m| m.chars().count()).max().unwrap_or(0) as u32
}

/// The size of an agreement figure.
fn agreement_size(agreement: &Agreement) -> (u32, u32) {
    let n = agreement.methods.len() as u32;
    let label = label_width(agreement);
    let panel = label + n * CELL + 90;
    (panel * agreement.panels.len().max(1) as u32, TITLE_H + 30 + n * CELL + label)
}

/// Draws the agreement matrices: each cell coloured with `bwr` centred on 0 (the panel's
/// largest |value| at the ends) and its value written in it.
impl Chart for Agreement {
    fn size(&self) -> (u32, u32) {
        agreement_size(self)
    }

    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        root.draw(&Text::new(self.title.clone(), (12, 12), text(18)))?;
        let n = self.methods.len();
        let label = label_width(self) as i32;
        let (width, _) = agreement_size(self);
        let panel_w = width as i32 / self.panels.len().max(1) as i32;
        for (p, panel) in self.panels.iter().enumerate() {
            let left = p as i32 * panel_w + label;
            let top = TITLE_H as i32 + 30;
            root.draw(&Text::new(panel.metric.clone(), (left, TITLE_H as i32 + 4), text(15)))?;
            let half = panel.content.iter().flatten().flatten().fold(0.0f64, |a, v| a.max(v.abs()));
            let scale = Scale::Diverging { center: 0.0, half: if half > 0.0 { half } else { 1.0 } };
            for (i, row) in panel.content.iter().enumerate() {
                let y = top + i as i32 * CELL as i32;
                let right = Pos::new(HPos::Right, VPos::Center);
                root.draw(&Text::new(self.methods[i].clone(), (left - 6, y + CELL as i32 / 2), text(12).pos(right)))?;
                for (j, value) in row.iter().enumerate() {
                    let x = left + j as i32 * CELL as i32;
                    let corners = [(x, y), (x + CELL as i32, y + CELL as i32)];
                    let fill = match value {
                        Some(v) => {
                            let [r, g, b] = ColorMap::Bwr.color(scale.unit(*v));
                            RGBColor(r, g, b)
                        }
                        None => RGBColor(235, 235, 235),
                    };
                    root.draw(&Rectangle::new(corners, fill.filled()))?;
                    root.draw(&Rectangle::new(corners, WHITE.stroke_width(1)))?;
                    let centre = (x + CELL as i32 / 2, y + CELL as i32 / 2);
                    let style = text(12).pos(Pos::new(HPos::Center, VPos::Center));
                    let written = value.map_or_else(|| "-".to_string(), number);
                    root.draw(&Text::new(written, centre, style))?;
                }
            }
            let bottom = top + n as i32 * CELL as i32 + 6;
            let down = Pos::new(HPos::Left, VPos::Center);
            for (j, method) in self.methods.iter().enumerate() {
                let x = left + j as i32 * CELL as i32 + CELL as i32 / 2;
                let style = text(12).transform(FontTransform::Rotate90).pos(down);
                root.draw(&Text::new(method.clone(), (x, bottom), style))?;
            }
            let bar_x = left + n as i32 * CELL as i32 + 10;
            colorbar(root, (bar_x, top), (14, (n as u32 * CELL).max(60)), scale, ColorMap::Bwr, 12)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::{png, svg};

    fn curves() -> Curves {
        let series = |method: &str, shift: f64| Series {
            method: method.into(),
            points: (0..4)
                .map(|x| (x, Estimate { mean: 1.0 - shift * x as f64, ci: Some((0.9 - shift * x as f64, 1.0)) }))
                .collect(),
            random_models: Some(0.1),
            random_map: Some(0.0),
            own_empty: (method == "gradcam").then_some((12, 200)),
        };
        Curves {
            title: "cascading".into(),
            x_desc: "randomised down to".into(),
            x_labels: vec!["original".into(), "logits".into(), "fc1".into(), "conv1".into()],
            panels: vec![
                Panel { metric: "spearman".into(), content: vec![series("gradient", 0.3), series("gradcam", 0.1)] },
                Panel { metric: "ssim".into(), content: vec![series("gradient", 0.2), series("gradcam", 0.05)] },
            ],
            ci: "95% CI of the mean over 3 draws and the images".into(),
            floors: ["two random models", "random map"],
        }
    }

    #[test]
    fn floors_at_one_value_stay_apart_and_an_empty_series_is_named() -> DrawResult {
        // Eight methods whose random-map floors are all 0: each gets its own column, right of
        // the last stage and inside the axis.
        let strip = FloorStrip::after(4, 8);
        let columns: Vec<f64> = (0..8).map(|i| strip.column(i)).collect();
        assert!(columns.windows(2).all(|w| w[1] - w[0] >= 0.09), "{columns:?}");
        assert!(columns[0] > 3.3 && columns[7] < strip.end(8), "{columns:?}");
        let mut c = curves();
        c.panels[1].content[1].points.clear();
        let s = svg(c.size(), |root| c.draw(root))?;
        assert!(s.contains("no scores: gradcam") && s.contains("floors"), "the empty series is named in its panel");
        assert!(s.contains("3 draws"), "the legend says what the band is");
        assert!(s.contains("own maps empty: 12 of 200"), "degenerate originals are counted in the figure");
        Ok(())
    }

    #[test]
    fn similarity_axes_show_zero_and_one_and_distance_axes_their_values() {
        for metric in ["spearman", "ssim", "top_k_intersection"] {
            let (lo, hi) = y_range([0.4, 0.6].into_iter(), metric);
            assert!(lo < 0.0 && hi > 1.0, "{metric}: ({lo}, {hi})");
        }
        let (lo, hi) = y_range([2.0, 3.0].into_iter(), "mse");
        assert!(lo > 1.9 && lo < 2.0 && hi > 3.0 && hi < 3.1, "mse: ({lo}, {hi})");
    }

    #[test]
    fn curves_draw_as_png_and_svg_deterministically() -> DrawResult {
        let c = curves();
        let a = png(c.size(), |root| c.draw(root))?;
        assert_eq!(a, png(c.size(), |root| c.draw(root))?);
        let s = svg(c.size(), |root| c.draw(root))?;
        assert!(s.contains("gradcam") && s.contains("spearman") && s.contains("fc1"), "labels are in the SVG");
        Ok(())
    }

    #[test]
    fn agreement_matrix_draws() -> DrawResult {
        let a = Agreement {
            title: "agreement".into(),
            methods: vec!["gradient".into(), "gradcam".into(), "sobel".into()],
            panels: vec![Panel {
                metric: "spearman".into(),
                content: vec![
                    vec![None, Some(0.25), Some(-0.75)],
                    vec![Some(0.25), None, Some(0.125)],
                    vec![Some(-0.75), Some(0.125), None],
                ],
            }],
        };
        let s = svg(a.size(), |root| a.draw(root))?;
        // Each value in both of its cells (the colour bar's ends are ±0.75, so 0.25 and 0.125
        // come from cells only), and a dash on the diagonal.
        for (value, times) in [(">\n0.25\n<", 2), (">\n0.125\n<", 2), (">\n-\n<", 3)] {
            assert_eq!(s.matches(value).count(), times, "{value} in:\n{s}");
        }
        Ok(())
    }
}
