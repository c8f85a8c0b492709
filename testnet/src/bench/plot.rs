//! SVG plots (plotters, SVG backend only): the distribution of propagation latencies.

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// A reference line drawn across a plot (e.g. Serf's median).
#[derive(Debug, Clone)]
pub(super) struct Marker {
    pub label: String,
    pub x_ms: f64,
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e}")
}

/// CDF of `samples_ms` (sorted), with vertical markers; x axis up to the largest of both.
pub(super) fn cdf(
    title: &str,
    label: &str,
    samples_ms: &[f64],
    markers: &[Marker],
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let xmax = samples_ms
            .iter()
            .copied()
            .chain(markers.iter().map(|m| m.x_ms))
            .fold(1.0, f64::max)
            * 1.6;
        let log_x = markers
            .iter()
            .any(|m| m.x_ms > 10.0 * samples_ms.last().copied().unwrap_or(1.0));
        let mut builder = ChartBuilder::on(&root);
        let chart = builder
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56);
        let n = samples_ms.len().max(1) as f64;
        let points: Vec<(f64, f64)> = samples_ms
            .iter()
            .enumerate()
            .map(|(i, &x)| (x.max(0.1), (i + 1) as f64 / n))
            .collect();
        if log_x {
            let mut c = chart
                .build_cartesian_2d((0.5f64..xmax).log_scale(), 0f64..1.0)
                .map_err(err)?;
            lines(
                &mut c,
                "latency to a node, ms (log scale)",
                label,
                points,
                markers,
            )?;
        } else {
            let mut c = chart
                .build_cartesian_2d(0f64..xmax, 0f64..1.0)
                .map_err(err)?;
            lines(&mut c, "latency to a node, ms", label, points, markers)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Draws the CDF and the markers on a chart whose x axis is linear or logarithmic.
fn lines<'a, X>(
    c: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, RangedCoordf64>>,
    x_desc: &str,
    label: &str,
    points: Vec<(f64, f64)>,
    markers: &[Marker],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    c.configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction of nodes reached")
        .draw()
        .map_err(err)?;
    c.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(err)?
        .label(label)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
    for (m, color) in markers.iter().zip([RED, MAGENTA, BLACK].iter().cycle()) {
        let color = *color;
        c.draw_series(LineSeries::new(vec![(m.x_ms, 0.0), (m.x_ms, 1.0)], color))
            .map_err(err)?
            .label(m.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Histogram of `samples_ms` in `bins` equal bins.
pub(super) fn histogram(title: &str, samples_ms: &[f64], bins: usize) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = samples_ms.iter().copied().fold(1.0, f64::max);
        let bins = bins.max(1);
        let width = max / bins as f64;
        let mut counts = vec![0u32; bins];
        for &s in samples_ms {
            let i = ((s / width) as usize).min(bins - 1);
            counts[i] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1).max(1);
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..max * 1.02, 0u32..top + top / 10 + 1)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("latency to a node, ms")
            .y_desc("nodes")
            .draw()
            .map_err(err)?;
        c.draw_series(counts.iter().enumerate().map(|(i, &n)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0), (x0 + width * 0.92, n)], BLUE.mix(0.6).filled())
        }))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_documents() {
        let samples: Vec<f64> = (1..200).map(|i| f64::from(i) * 0.3).collect();
        let marker = Marker {
            label: "serf median".into(),
            x_ms: 1300.0,
        };
        let svg = cdf("t", "degroup", &samples, &[marker]).unwrap_or_default();
        assert!(svg.starts_with("<svg") && svg.contains("degroup"));
        let svg = histogram("t", &samples, 20).unwrap_or_default();
        assert!(svg.starts_with("<svg") && svg.contains("<rect"));
    }
}
