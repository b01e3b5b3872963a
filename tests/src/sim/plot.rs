//! One PNG per scenario: served, purchased and allowed requests/s (all buyers summed) above,
//! the first buyer's fraction below.

use std::path::Path;

use plotters::prelude::*;

use super::Trace;

/// Text needs a font: the daemon's charts' (DejaVu Sans from the system). Without it the plot
/// is drawn without labels.
pub use spillway::ui::chart::font_loaded;

pub fn draw(path: &Path, title: &str, tr: &Trace) -> Result<(), String> {
    let labels = font_loaded();
    let len = tr.served[0].len();
    let sum = |v: &Vec<Vec<f64>>| -> Vec<f64> { (0..len).map(|t| v.iter().map(|x| x[t]).sum()).collect() };
    let (served, purchased, allowed) = (sum(&tr.served), sum(&tr.purchased), sum(&tr.allowed));
    let top = served.iter().chain(&purchased).copied().fold(1.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (upper, lower) = root.split_vertically(480);
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut chart = ChartBuilder::on(&upper);
    chart.margin(10).x_label_area_size(if labels { 30 } else { 0 }).y_label_area_size(if labels { 70 } else { 0 });
    if labels {
        chart.caption(title, ("sans-serif", 22));
    }
    let mut c = chart.build_cartesian_2d(0..len, 0.0..top).map_err(e)?;
    if labels {
        c.configure_mesh().y_desc("requests/s").x_desc("s").draw().map_err(e)?;
    }
    let series = [(&served, BLUE, "served"), (&purchased, BLACK, "purchased"), (&allowed, RED, "allowed")];
    for (data, color, name) in series {
        let s = c.draw_series(LineSeries::new(data.iter().enumerate().map(|(t, v)| (t, *v)), color)).map_err(e)?;
        if labels {
            s.label(name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if labels {
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;
    }
    let mut chart = ChartBuilder::on(&lower);
    chart.margin(10).x_label_area_size(if labels { 30 } else { 0 }).y_label_area_size(if labels { 70 } else { 0 });
    let mut c = chart.build_cartesian_2d(0..len, 0.0..1.0).map_err(e)?;
    if labels {
        c.configure_mesh().y_desc("fraction (buyer 0)").draw().map_err(e)?;
    }
    c.draw_series(LineSeries::new(tr.fraction[0].iter().enumerate().map(|(t, v)| (t, *v)), GREEN)).map_err(e)?;
    root.present().map_err(|e| e.to_string())
}
