//! The latency distribution as a chart (plotters): latency against
//! percentile on a "nines" axis (90, 99, 99.9, ...), one line per
//! histogram. SVG or PNG by the file's extension.

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

/// Fonts tried in order (plotters needs one to lay out text).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

fn load_font() -> Result<()> {
    let from_env = std::env::var("SQUALL_LOADTEST_FONT").ok();
    for path in from_env.iter().map(String::as_str).chain(FONTS.iter().copied()) {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    bail!(
        "no TrueType font found for the plot: install fonts-dejavu-core or set SQUALL_LOADTEST_FONT=/path/to/font.ttf"
    )
}

/// Points (nines, ms) of a histogram's percentile distribution.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let max_nines = (h.len() as f64).log10().max(1.0);
    let steps = 200;
    for i in 0..=steps {
        let nines = max_nines * i as f64 / steps as f64;
        let q = 1.0 - 10f64.powf(-nines);
        out.push((nines, h.value_at_quantile(q) as f64 / 1000.0));
    }
    out
}

/// Draws `series` (name, histogram) to `path` (.svg or .png).
pub fn draw(path: &Path, title: &str, series: &[(String, &Histogram<u64>)]) -> Result<()> {
    load_font()?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "svg" => render(SVGBackend::new(path, (960, 600)).into_drawing_area(), title, series),
        "png" => render(BitMapBackend::new(path, (960, 600)).into_drawing_area(), title, series),
        _ => bail!("--plot wants a .svg or .png file, not {}", path.display()),
    }
    .with_context(|| format!("drawing {}", path.display()))
}

fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[(String, &Histogram<u64>)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(err)?;
    let curves: Vec<(String, Vec<(f64, f64)>)> = series.iter().map(|(n, h)| (n.clone(), curve(h))).collect();
    let x_max = curves.iter().flat_map(|(_, c)| c.last().map(|p| p.0)).fold(1.0, f64::max);
    let y_max = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels((x_max.ceil() as usize) + 1)
        .x_label_formatter(&|n| {
            let p = 100.0 * (1.0 - 10f64.powf(-n));
            if p < 99.99 {
                format!("{p:.2}%")
            } else {
                format!("{p}%")
            }
        })
        .draw()
        .map_err(err)?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_rises_along_the_nines() {
        let mut h = crate::stats::histogram();
        for v in 1..=10_000u64 {
            crate::stats::record(&mut h, v);
        }
        let c = curve(&h);
        assert_eq!(c.first().map(|p| p.0), Some(0.0));
        assert!((c.last().map(|p| p.0).unwrap_or(0.0) - 4.0).abs() < 1e-9, "10^4 samples: 4 nines");
        assert!(c.windows(2).all(|w| w[1].1 >= w[0].1), "latency never falls as percentile rises");
        assert!(curve(&crate::stats::histogram()).is_empty());
    }
}
