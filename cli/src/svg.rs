//! Line charts as inline SVG: a title, a y axis with a label and round ticks, a time axis,
//! gridlines, one line per series (broken where there is no value) and a legend.

use crate::duration::utc;
use crate::output::html_escape as escape;
use std::fmt::Write as _;

const W: f64 = 560.0;
const H: f64 = 240.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 40.0;

/// One line.
#[derive(Debug)]
pub(crate) struct Series {
    name: String,
    color: &'static str,
    values: Vec<Option<f64>>,
}

impl Series {
    /// A line named `name` in `color`, one value per time (`None`: a gap).
    pub(crate) fn new(name: &str, color: &'static str, values: Vec<Option<f64>>) -> Series {
        Series {
            name: name.into(),
            color,
            values,
        }
    }
}

/// A chart of several series over the same times (seconds since the Unix epoch).
#[derive(Debug)]
pub(crate) struct Chart<'a> {
    pub(crate) title: String,
    pub(crate) y_label: String,
    pub(crate) times: &'a [f64],
    pub(crate) series: Vec<Series>,
    /// The most the y axis needs to show (e.g. 100 for percentages); `None`: from the data.
    pub(crate) y_max: Option<f64>,
}

impl Chart<'_> {
    /// The `<svg>` element.
    pub(crate) fn render(&self) -> String {
        let data_max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0f64, |a, &v| a.max(v));
        let wanted = match self.y_max {
            // A percentage axis shows what there is, up to its bound.
            Some(bound) => data_max.min(bound),
            None => data_max,
        };
        let (top, step) = nice_ticks(wanted);
        let (t0, t1) = match (self.times.first(), self.times.last()) {
            (Some(&a), Some(&b)) if b > a => (a, b),
            (Some(&a), _) => (a - 1.0, a + 1.0),
            _ => (0.0, 1.0),
        };
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * pw;
        let y = |v: f64| TOP + ph - (v / top).clamp(0.0, 1.0) * ph;

        let mut s = String::new();
        let _ = write!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{}" font-family="system-ui, sans-serif" font-size="12">"##,
            escape(&self.title)
        );
        let _ = write!(
            s,
            r##"<text x="{LEFT}" y="18" font-size="13" font-weight="600" fill="#1f2937">{}</text>"##,
            escape(&self.title)
        );
        // Legend, right-aligned in the title row.
        let mut lx = W - RIGHT;
        for se in self.series.iter().rev() {
            lx -= 8.0 + 7.0 * se.name.chars().count() as f64;
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="18" fill="#475569">{}</text><rect x="{:.1}" y="11" width="12" height="3" fill="{}"/>"##,
                lx + 16.0,
                escape(&se.name),
                lx,
                se.color
            );
            lx -= 16.0;
        }
        // Horizontal gridlines and y tick labels.
        let mut v = 0.0;
        while v <= top + step / 2.0 {
            let yy = y(v);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e2e8f0"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#64748b">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                yy + 4.0,
                tick_label(v, step)
            );
            v += step;
        }
        // Y axis label, rotated.
        let _ = write!(
            s,
            r##"<text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" fill="#475569">{}</text>"##,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        // Time axis: five labels.
        let span = t1 - t0;
        for i in 0..5 {
            let t = t0 + span * i as f64 / 4.0;
            let xx = x(t);
            let anchor = match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            let _ = write!(
                s,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{:.1}" y2="{:.1}" stroke="#94a3b8"/><text x="{xx:.1}" y="{:.1}" text-anchor="{anchor}" fill="#64748b">{}</text>"##,
                TOP + ph,
                TOP + ph + 4.0,
                TOP + ph + 16.0,
                time_label(t, span)
            );
        }
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#94a3b8"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#475569">time (UTC)</text>"##,
            W - RIGHT,
            TOP + ph,
            TOP + ph,
            LEFT + pw / 2.0,
            H - 6.0
        );
        // The lines: a path broken at gaps, and a dot on every value.
        for se in &self.series {
            let mut d = String::new();
            let mut pen_down = false;
            let mut dots = String::new();
            for (&t, v) in self.times.iter().zip(&se.values) {
                match v {
                    Some(v) => {
                        let (xx, yy) = (x(t), y(*v));
                        let _ = write!(d, "{}{xx:.1} {yy:.1} ", if pen_down { "L" } else { "M" });
                        let _ = write!(
                            dots,
                            r##"<circle cx="{xx:.1}" cy="{yy:.1}" r="2.2" fill="{}"/>"##,
                            se.color
                        );
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            if !d.is_empty() {
                let _ = write!(
                    s,
                    r##"<path d="{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>{dots}"##,
                    d.trim_end(),
                    se.color
                );
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// A round top for an axis showing up to `max`, and the step between ticks (4 to 8 ticks).
fn nice_ticks(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

/// A tick value with as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..6)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-9
        })
        .unwrap_or(6) as usize;
    format!("{v:.decimals$}")
}

/// `HH:MM:SS` in a window under 10 minutes, `HH:MM` under 2 days, `MM-DD HH:MM` beyond.
fn time_label(t: f64, span: f64) -> String {
    let full = utc(t);
    if span < 600.0 {
        full[11..19].to_owned()
    } else if span < 2.0 * 86_400.0 {
        full[11..16].to_owned()
    } else {
        full[5..16].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(0.0), (1.0, 0.25));
        assert_eq!(nice_ticks(7.3), (8.0, 2.0));
        assert_eq!(nice_ticks(100.0), (100.0, 25.0));
        assert_eq!(nice_ticks(1234.0), (1500.0, 500.0));
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(0.5, 0.5), "0.5");
        assert_eq!(tick_label(500.0, 500.0), "500");
    }

    #[test]
    fn a_chart_has_axes_and_a_broken_line() {
        let times = [0.0, 60.0, 120.0, 180.0];
        let c = Chart {
            title: "Latency".into(),
            y_label: "µs".into(),
            times: &times,
            series: vec![Series::new(
                "p99",
                "#7c3aed",
                vec![Some(1.0), Some(2.0), None, Some(3.0)],
            )],
            y_max: None,
        };
        let svg = c.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<path").count(), 1);
        assert_eq!(
            svg.matches(" M").count() + svg.matches("\"M").count(),
            2,
            "{svg}"
        );
        assert!(svg.contains(">µs</text>") && svg.contains(">time (UTC)</text>"));
        assert!(svg.contains(">00:00:00</text>"));
    }
}
