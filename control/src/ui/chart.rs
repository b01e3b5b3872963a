//! A buyer's last hour as an SVG chart (plotters): purchased, served and setpoint in
//! requests/s above, the fraction in force below.

use plotters::prelude::*;

use crate::history::Sample;

/// A line of the upper chart: its name, colour and value in a sample.
type Series = (&'static str, RGBColor, fn(&Sample) -> Option<f64>);

const WIDTH: u32 = 560;
const HEIGHT: u32 = 300;

/// The chart of `samples` (oldest first), ending at `now`; an empty history draws the axes.
pub fn history_svg(customer: &str, samples: &[Sample], now: i64) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
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
        let mut rps = ChartBuilder::on(&top)
            .caption(format!("{customer}: requests/s"), ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(18)
            .y_label_area_size(48)
            .build_cartesian_2d(x_range.clone(), 0.0..peak * 1.15)
            .map_err(|e| e.to_string())?;
        rps.configure_mesh().x_labels(6).y_labels(5).draw().map_err(|e| e.to_string())?;
        let series: [Series; 3] = [
            ("purchased", BLACK, |s| Some(s.contracted_rps as f64)),
            ("served", RGBColor(0xd6, 0x27, 0x28), |s| s.served_rps),
            ("setpoint", RGBColor(0x1f, 0x77, 0xb4), |s| s.setpoint_rps),
        ];
        for (name, color, value) in series {
            let points: Vec<(f64, f64)> = samples.iter().filter_map(|s| value(s).map(|v| (x(s.t), v))).collect();
            rps.draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        }
        rps.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())?;
        let mut fraction = ChartBuilder::on(&bottom)
            .caption("fraction in force (minutes before now)", ("sans-serif", 12))
            .margin(6)
            .x_label_area_size(18)
            .y_label_area_size(48)
            .build_cartesian_2d(x_range, 0.0..1.0)
            .map_err(|e| e.to_string())?;
        fraction.configure_mesh().x_labels(6).y_labels(3).draw().map_err(|e| e.to_string())?;
        let points: Vec<(f64, f64)> = samples.iter().map(|s| (x(s.t), s.fraction)).collect();
        fraction
            .draw_series(LineSeries::new(points, RGBColor(0x2c, 0xa0, 0x2c).stroke_width(2)))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
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
        let svg = history_svg("shop", &samples, 1010).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("shop: requests/s"), "{}", &svg[..200.min(svg.len())]);
        assert!(svg.contains("purchased") && svg.contains("setpoint") && svg.contains("<polyline"), "series drawn");
        assert!(history_svg("blog", &[], 1010).unwrap().contains("blog: requests/s"));
    }
}
