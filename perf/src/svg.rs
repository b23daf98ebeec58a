//! Two hand-drawn SVG charts: events/s per system for each scenario, and latency by
//! percentile. Plain SVG 1.1 text, no dependencies; any browser shows it.

use std::fmt::Write as _;

use crate::report::Row;

const PALETTE: [&str; 6] = ["#c0392b", "#2c7fb8", "#41b6c4", "#7fcdbb", "#756bb1", "#969696"];

fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Horizontal bars of events/s, one group per scenario, one bar per system; each group is
/// scaled to its own fastest system (scenarios differ by orders of magnitude), and every bar
/// carries its figure.
pub fn throughput_chart(title: &str, rows: &[Row]) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    let mut systems: Vec<&str> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    let (left, bar, gap, width) = (150.0, 18.0, 14.0, 860.0);
    let group_height = |n: usize| n as f64 * bar + gap + 18.0;
    let mut y = 50.0;
    let mut body = String::new();
    for scenario in &scenarios {
        let group: Vec<&Row> = rows.iter().filter(|r| r.scenario == *scenario).collect();
        let best = group.iter().map(|r| r.events_per_sec).fold(0.0, f64::max).max(1.0);
        let _ = writeln!(
            body,
            r#"<text x="10" y="{:.0}" font-weight="bold">{}</text>"#,
            y + 12.0,
            escape(scenario)
        );
        y += 18.0;
        for r in &group {
            let i = systems.iter().position(|s| *s == r.system).unwrap_or(0);
            let w = (width - left - 140.0) * r.events_per_sec / best;
            let _ = writeln!(
                body,
                r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text><rect x="{left}" y="{:.0}" width="{w:.1}" height="{:.0}" fill="{}"/><text x="{:.1}" y="{:.0}">{:.2} M/s</text>"#,
                left - 6.0,
                y + bar - 5.0,
                escape(&r.system),
                y + 2.0,
                bar - 4.0,
                color(i),
                left + w + 6.0,
                y + bar - 5.0,
                r.events_per_sec / 1e6
            );
            y += bar;
        }
        y += gap;
    }
    let height = 50.0
        + scenarios
            .iter()
            .map(|s| group_height(rows.iter().filter(|r| r.scenario == *s).count()))
            .sum::<f64>()
        + 10.0;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="24" font-size="16" font-weight="bold">{}</text>
<text x="10" y="40" fill="#555">events/s, each scenario scaled to its fastest system</text>
{body}</svg>
"##,
        escape(title)
    )
}

/// The percentiles drawn, as quantiles.
pub const QUANTILES: [f64; 7] = [0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 0.99999];

/// Latency by percentile, one line per system: x is the number of nines (log scale in
/// `1 - q`), y is microseconds on a log scale. `series` is `(system, [(quantile, us)])`.
pub fn latency_chart(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (left, top, w, h) = (70.0, 50.0, 700.0, 360.0);
    let nines = |q: f64| -(1.0 - q).log10();
    let (x_min, x_max) = (nines(QUANTILES[0]), nines(QUANTILES[QUANTILES.len() - 1]));
    let values = series.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1.max(0.1)));
    let y_max = values.clone().fold(1.0f64, f64::max).log10().ceil();
    let y_min = values.fold(f64::MAX, f64::min).log10().floor().min(y_max - 1.0);
    let px = |q: f64| left + w * (nines(q) - x_min) / (x_max - x_min);
    let py = |us: f64| top + h - h * (us.max(0.1).log10() - y_min) / (y_max - y_min);
    let mut body = String::new();
    for q in QUANTILES {
        let _ = writeln!(
            body,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.0}" stroke="#ddd"/><text x="{x:.1}" y="{:.0}" text-anchor="middle">p{}</text>"##,
            top + h,
            top + h + 16.0,
            (q * 100_000.0).round() / 1_000.0,
            x = px(q)
        );
    }
    let mut decade = y_min;
    while decade <= y_max {
        let y = py(10f64.powf(decade));
        let _ = writeln!(
            body,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.0}" y2="{y:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{} us</text>"##,
            left + w,
            left - 6.0,
            y + 4.0,
            10f64.powf(decade)
        );
        decade += 1.0;
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .map(|&(q, us)| format!("{:.1},{:.1}", px(q), py(us)))
            .collect();
        let _ = writeln!(
            body,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/><rect x="{:.0}" y="{:.0}" width="12" height="12" fill="{c}"/><text x="{:.0}" y="{:.0}">{}</text>"#,
            path.join(" "),
            left + 10.0,
            top + 8.0 + 18.0 * i as f64,
            left + 28.0,
            top + 18.0 + 18.0 * i as f64,
            escape(name),
            c = color(i)
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="24" font-size="16" font-weight="bold">{}</text>
<text x="10" y="40" fill="#555">submit-to-handled latency by percentile (from the intended send time)</text>
{body}</svg>
"##,
        left + w + 30.0,
        top + h + 40.0,
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_and_carry_their_figures() {
        let rows = [
            Row::throughput("uniform-10k", "humpyard", 20_000_000, 1.0, None),
            Row::throughput("uniform-10k", "crossbeam-pool", 10_000_000, 1.0, None),
        ];
        let svg = throughput_chart("t <&>", &rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("20.00 M/s") && svg.contains("10.00 M/s"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        let series = vec![(
            "humpyard".to_owned(),
            QUANTILES.iter().map(|&q| (q, 10.0 / (1.0 - q))).collect(),
        )];
        let svg = latency_chart("lat", &series);
        assert!(svg.contains("<polyline") && svg.contains(">p99.9<") && svg.contains(">p99.999<"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
