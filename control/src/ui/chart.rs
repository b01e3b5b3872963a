//! A buyer's last hour as an SVG chart (plotters): purchased, served and setpoint in
//! requests/s above, the fraction in force below.
//!
//! Text needs a font to be measured: DejaVu Sans from the system (Debian's fonts-dejavu-core,
//! which the package recommends and `cargo xtask setup` installs). Without it the chart is
//! drawn without its labels.

use plotters::prelude::*;

use crate::history::Sample;

/// Where Debian keeps DejaVu Sans.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Register the font for plotters, once; whether text can be drawn.
pub fn font_loaded() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        let Ok(bytes) = std::fs::read(FONT) else { return false };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

/// A line of the upper chart: its name, colour and value in a sample.
type Series = (&'static str, RGBColor, fn(&Sample) -> Option<f64>);

const WIDTH: u32 = 560;
const HEIGHT: u32 = 300;

/// The chart of `samples` (oldest first), ending at `now`; an empty history draws the axes.
pub fn history_svg(customer: &str, samples: &[Sample], now: i64) -> Result<String, String> {
    let labels = font_loaded();
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (top, bottom) = root.split_vertically(HEIGHT * 2 / 3);
        // Minutes before now, on both charts.
        let start = samples.first().map_or(now - 60, |s| s.t.min(now - 60));
        let x = |t: i64| (t - now) as f64 / 60.0;
        let x_range = x(start)..0.0;
        let peak = samples
            .iter()
            .flat_map(|s| [Some(s.contracted_rps as f64), s.served_rps, s.setpoint_rps])
            .flatten()
            .fold(1.0_f64, f64::max);
        let (label_x, label_y) = if labels { (18, 48) } else { (0, 0) };
        let mut builder = ChartBuilder::on(&top);
        builder.margin(6).x_label_area_size(label_x).y_label_area_size(label_y);
        if labels {
            builder.caption(format!("{customer}: requests/s"), ("sans-serif", 14));
        }
        let mut rps = builder.build_cartesian_2d(x_range.clone(), 0.0..peak * 1.15).map_err(e)?;
        let n = if labels { 6 } else { 0 };
        rps.configure_mesh().x_labels(n).y_labels(n.min(5)).draw().map_err(e)?;
        let series: [Series; 3] = [
            ("purchased", BLACK, |s| Some(s.contracted_rps as f64)),
            ("served", RGBColor(0xd6, 0x27, 0x28), |s| s.served_rps),
            ("setpoint", RGBColor(0x1f, 0x77, 0xb4), |s| s.setpoint_rps),
        ];
        for (name, color, value) in series {
            let points: Vec<(f64, f64)> = samples.iter().filter_map(|s| value(s).map(|v| (x(s.t), v))).collect();
            rps.draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        }
        if labels {
            rps.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(e)?;
        }
        let mut builder = ChartBuilder::on(&bottom);
        builder.margin(6).x_label_area_size(label_x).y_label_area_size(label_y);
        if labels {
            builder.caption("fraction in force (minutes before now)", ("sans-serif", 12));
        }
        let mut fraction = builder.build_cartesian_2d(x_range, 0.0..1.0).map_err(e)?;
        fraction.configure_mesh().x_labels(n).y_labels(n.min(3)).draw().map_err(e)?;
        let points: Vec<(f64, f64)> = samples.iter().map(|s| (x(s.t), s.fraction)).collect();
        fraction.draw_series(LineSeries::new(points, RGBColor(0x2c, 0xa0, 0x2c).stroke_width(2))).map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_series_and_an_empty_history() {
        let s = |t: i64, served: Option<f64>| Sample {
            t,
            fraction: 0.4,
            contracted_rps: 100,
            served_rps: served,
            setpoint_rps: Some(90.0),
        };
        let samples = [s(1000, Some(120.0)), s(1005, None), s(1010, Some(95.0))];
        assert!(font_loaded(), "{FONT} (fonts-dejavu-core, installed by cargo xtask setup)");
        let svg = history_svg("shop", &samples, 1010).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("shop: requests/s"), "{}", &svg[..200.min(svg.len())]);
        assert!(svg.contains("purchased") && svg.contains("setpoint") && svg.contains("<polyline"), "series drawn");
        assert!(history_svg("blog", &[], 1010).unwrap().contains("blog: requests/s"));
    }
}
