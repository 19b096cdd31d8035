//! The report as a page to look at: an HTML file with one chart of ratios per
//! section (a bar from 1× to each row's ratio, on a log scale) and the message
//! size sweep as lines, drawn with `plotters` from the report's JSON document
//! (the same one `--json` writes), so that a saved run can be drawn again.
//!
//! The charts are SVG inside the page: no script, no file beside it, nothing
//! fetched. `scripts/report-page` opens it in a headless Chromium and checks
//! that every chart is drawn.

use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// Where a saved run falls short of what the page needs.
#[derive(Debug)]
pub struct PageError(String);

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot draw the report: {}", self.0)
    }
}

impl std::error::Error for PageError {}

/// One row of the report as the page reads it back from the JSON document.
#[derive(Debug, Clone)]
struct Row {
    section: String,
    /// The measure's full name ("same, batches of 32" reads as the row above's
    /// name with ", batches of 32").
    measure: String,
    peer: String,
    ours: f64,
    peer_value: f64,
    unit: String,
    ratio: f64,
    target: String,
    met: bool,
}

fn rows(doc: &Value) -> Result<Vec<Row>, PageError> {
    let list = doc["rows"]
        .as_array()
        .ok_or_else(|| PageError("the document has no \"rows\" list".into()))?;
    let mut out: Vec<Row> = Vec::with_capacity(list.len());
    let mut named = String::new();
    for (i, r) in list.iter().enumerate() {
        let text = |key: &str| -> Result<String, PageError> {
            r[key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| PageError(format!("row {i} has no text {key:?}")))
        };
        let number = |key: &str| -> Result<f64, PageError> {
            r[key]
                .as_f64()
                .ok_or_else(|| PageError(format!("row {i} has no number {key:?}")))
        };
        let measure = text("measure")?;
        let measure = match measure.strip_prefix("same") {
            // "same, batches of 32 (ns/msg)" under "queue 1P→1C, 8 B (ns/msg)":
            // the unit once, at the end.
            Some(rest) if !named.is_empty() && rest.ends_with(')') => {
                let base = named.rsplit_once(" (").map_or(named.as_str(), |(b, _)| b);
                format!("{base}{rest}")
            }
            Some(rest) if !named.is_empty() => format!("{named}{rest}"),
            _ => {
                named.clone_from(&measure);
                measure
            }
        };
        out.push(Row {
            section: text("section")?,
            measure,
            peer: text("peer")?,
            ours: number("ours")?,
            peer_value: number("peer_value")?,
            unit: text("unit")?,
            ratio: number("ratio")?,
            target: text("target")?,
            met: r["met"].as_bool().unwrap_or(false),
        });
    }
    Ok(out)
}

/// A point of the size sweep: one message size beside one peer.
struct Point {
    /// The message size in bytes.
    size: u64,
    peer: String,
    /// GB/s (1 / ns per byte) of ours and of the peer.
    ours: f64,
    theirs: f64,
}

/// The sweep's points, from the rows whose unit is ns/byte.
fn sweep(rows: &[Row]) -> Vec<Point> {
    rows.iter()
        .filter(|r| r.unit == "ns/byte" && r.ours > 0.0 && r.peer_value > 0.0)
        .filter_map(|r| {
            Some(Point {
                size: size_of_measure(&r.measure)?,
                peer: r.peer.clone(),
                ours: 1.0 / r.ours,
                theirs: 1.0 / r.peer_value,
            })
        })
        .collect()
}

/// "Pipe 1P→1C, 64 KiB (ns/byte)" → 65536.
fn size_of_measure(measure: &str) -> Option<u64> {
    let words: Vec<&str> = measure.split([' ', ',', '(']).collect();
    words.windows(2).find_map(|w| {
        let n: u64 = w[0].parse().ok()?;
        let scale = match w[1] {
            "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return None,
        };
        Some(n * scale)
    })
}

/// Tick marks for a log axis from `lo` to `hi`: 1, 2 and 5 times each power
/// of ten over a few decades, powers of ten alone over more.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let wide = hi / lo > 1e4;
    let mut out = Vec::new();
    for e in -6..=9 {
        let decade = 10f64.powi(e);
        for m in if wide {
            &[1.0][..]
        } else {
            &[1.0, 2.0, 5.0][..]
        } {
            // Rounded so that 0.1 × 2 prints as 0.2, not 0.20000000000000001.
            let t = (m * decade * 1e6).round() / 1e6;
            if t >= lo && t <= hi && t > 0.0 {
                out.push(t);
            }
        }
    }
    out
}

/// The powers of `base` from `lo` to `hi` (message sizes: 1 B, 4 B, 16 B, …).
fn powers_of(base: f64, lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut t = 1.0;
    while t <= hi {
        if t >= lo {
            out.push(t);
        }
        t *= base;
    }
    out
}

/// A ratio with two significant digits at least: 0.0049, 0.12, 1.59, 26.32.
fn ratio_text(r: f64) -> String {
    let digits = if r > 0.0 && r < 0.1 {
        (1 - r.log10().floor() as i32) as usize
    } else {
        2
    };
    format!("{r:.digits$}")
}

fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const MET: RGBColor = RGBColor(38, 139, 120);
const NOT_MET: RGBColor = RGBColor(205, 60, 50);
const REFERENCE: RGBColor = RGBColor(150, 150, 160);

/// A row's colour: a target met or not; grey for a row kept for reference
/// (its target is a remark in parentheses).
fn colour(r: &Row) -> RGBColor {
    if r.target.starts_with('(') {
        REFERENCE
    } else if r.met {
        MET
    } else {
        NOT_MET
    }
}

fn draw_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> PageError {
    PageError(format!("plotters: {e}"))
}

/// A section's ratios as horizontal bars from 1× (the peer) to ours / peer on a
/// log scale: a bar to the left is faster than the peer.
fn ratio_chart(title: &str, rows: &[Row]) -> Result<String, PageError> {
    let label_width: u32 = 470;
    let height = 70 + 26 * rows.len() as u32;
    let (lo, hi) = rows
        .iter()
        .map(|r| r.ratio)
        .filter(|r| r.is_finite() && *r > 0.0)
        .fold((0.5f64, 2.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let (lo, hi) = (lo / 2.0, hi * 2.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let n = rows.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .margin_left(label_width)
            .x_label_area_size(28)
            .build_cartesian_2d((lo..hi).log_scale().with_key_points(ticks(lo, hi)), 0.0..n)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .max_light_lines(0)
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .x_desc("ours / peer (log scale; left of 1× is faster than the peer)")
            .x_label_formatter(&|x| format!("{x}×"))
            .draw()
            .map_err(draw_error)?;
        let y_of = |i: usize| n - i as f64 - 1.0;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let ratio = r.ratio.clamp(lo, hi);
                let (a, b) = if ratio < 1.0 {
                    (ratio, 1.0)
                } else {
                    (1.0, ratio)
                };
                Rectangle::new(
                    [(a, y_of(i) + 0.15), (b, y_of(i) + 0.85)],
                    colour(r).filled(),
                )
            }))
            .map_err(draw_error)?;
        chart
            .draw_series(LineSeries::new(
                [(1.0, 0.0), (1.0, n)],
                BLACK.stroke_width(1),
            ))
            .map_err(draw_error)?;
        let small = TextStyle::from(("sans-serif", 13).into_font());
        for (i, r) in rows.iter().enumerate() {
            let ratio = r.ratio.clamp(lo, hi);
            let (px, py) = chart.backend_coord(&(ratio, y_of(i) + 0.5));
            let (x0, _) = chart.backend_coord(&(lo, 0.0));
            let label = format!("{} — vs {}", r.measure, r.peer);
            root.draw(&Text::new(
                label,
                (x0 - 8, py),
                small.pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(draw_error)?;
            let (text, pos) = if r.ratio < 1.0 {
                (format!("{}× ", ratio_text(r.ratio)), HPos::Right)
            } else {
                (format!(" {}×", ratio_text(r.ratio)), HPos::Left)
            };
            root.draw(&Text::new(
                text,
                (px, py),
                small.pos(Pos::new(pos, VPos::Center)),
            ))
            .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Throughput in GB/s against message size (both on log scales): ours and
/// each peer as a line.
fn sweep_chart(points: &[Point]) -> Result<String, PageError> {
    let mut peers: Vec<&str> = Vec::new();
    for p in points {
        if !peers.contains(&p.peer.as_str()) {
            peers.push(&p.peer);
        }
    }
    let mut ours: Vec<(f64, f64)> = Vec::new();
    for p in points {
        if !ours.iter().any(|(s, _)| *s == p.size as f64) {
            ours.push((p.size as f64, p.ours));
        }
    }
    let sizes = points.iter().map(|p| p.size as f64);
    let (xmin, xmax) = sizes.fold((f64::MAX, 0.0f64), |(a, b), s| (a.min(s), b.max(s)));
    let speeds = points.iter().flat_map(|p| [p.ours, p.theirs]);
    let (ymin, ymax) = speeds.fold((f64::MAX, 0.0f64), |(a, b), s| (a.min(s), b.max(s)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Pipe 1P→1C: throughput by message size", ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (xmin / 1.5..xmax * 1.5)
                    .log_scale()
                    .with_key_points(powers_of(4.0, xmin / 1.5, xmax * 1.5)),
                (ymin / 2.0..ymax * 2.0)
                    .log_scale()
                    .with_key_points(ticks(ymin / 2.0, ymax * 2.0)),
            )
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .x_desc("message size (bytes, log scale)")
            .y_desc("GB/s (log scale)")
            .x_label_formatter(&|x| size_label(x.round() as u64))
            .y_label_formatter(&|y| format!("{y}"))
            .draw()
            .map_err(draw_error)?;
        let palette = [MET, RGBColor(70, 100, 200), RGBColor(220, 140, 30), NOT_MET];
        let mut lines = vec![("ours (multiproc Pipe)", ours, palette[0])];
        for (k, peer) in peers.iter().enumerate() {
            let line = points
                .iter()
                .filter(|p| p.peer == *peer)
                .map(|p| (p.size as f64, p.theirs))
                .collect();
            lines.push((peer, line, palette[(k + 1) % palette.len()]));
        }
        for (name, line, c) in lines {
            chart
                .draw_series(LineSeries::new(line.iter().copied(), c.stroke_width(2)))
                .map_err(draw_error)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
            chart
                .draw_series(line.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(draw_error)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// One chart of the page, as an SVG document of its own.
#[derive(Debug, Clone)]
pub struct Chart {
    /// A name fit for a file: `ratios-SECTION` or `sweep`.
    pub name: String,
    /// The heading above it on the page.
    pub heading: String,
    /// The SVG document.
    pub svg: String,
}

/// Every chart of a saved run: one of ratios per section, in the run's order,
/// then the size sweep (when the run has one).
///
/// # Errors
/// As [`html`].
pub fn charts(doc: &Value) -> Result<Vec<Chart>, PageError> {
    charts_of(&rows(doc)?)
}

fn charts_of(rows: &[Row]) -> Result<Vec<Chart>, PageError> {
    let mut sections: Vec<&str> = Vec::new();
    for r in rows {
        if !sections.contains(&r.section.as_str()) {
            sections.push(&r.section);
        }
    }
    let mut out = Vec::new();
    for s in sections {
        let in_section: Vec<Row> = rows.iter().filter(|r| r.section == s).cloned().collect();
        out.push(Chart {
            name: format!("ratios-{s}"),
            heading: s.to_owned(),
            svg: ratio_chart(&format!("section {s}: ours / peer"), &in_section)?,
        });
    }
    let points = sweep(rows);
    if !points.is_empty() {
        out.push(Chart {
            name: "sweep".into(),
            heading: "message sizes".into(),
            svg: sweep_chart(&points)?,
        });
    }
    Ok(out)
}

/// The whole page: the machine, one ratio chart per section, the sweep (when
/// the run has one), and the table of every row.
///
/// # Errors
/// If the document lacks a field a row needs, or plotters fails to draw.
pub fn html(doc: &Value) -> Result<String, PageError> {
    let rows = rows(doc)?;
    let m = &doc["machine"];
    let machine = format!(
        "{} of {}: {}, {} cores, Linux {}",
        if doc["quick"].as_bool() == Some(true) {
            "quick run"
        } else {
            "full run"
        },
        m["date"].as_str().unwrap_or("?"),
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"].as_u64().unwrap_or(0),
        m["kernel"].as_str().unwrap_or("?"),
    );
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>multiproc report</title><style>\
         body{{font-family:sans-serif;max-width:1140px;margin:1em auto;color:#222}}\
         table{{border-collapse:collapse;font-size:13px}}\
         td,th{{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left}}\
         td.n{{text-align:right}} .no{{color:#c33;font-weight:bold}}\
         figure{{margin:1em 0}}</style></head><body>\n\
         <h1>multiproc comparison report</h1>\n<p>{}. Every ratio is ours / the \
         peer's, measured in the same run (lower is better); green: a target met, \
         red: not met, grey: a row for reference.</p>\n",
        escape(&machine)
    );
    for chart in charts_of(&rows)? {
        let _ = write!(
            page,
            "<h2 id=\"{0}\">{1}</h2>\n<figure class=\"chart\" data-chart=\"{0}\">{2}</figure>\n",
            escape(&chart.name),
            escape(&chart.heading),
            chart.svg
        );
    }
    page.push_str(
        "<h2>every row</h2>\n<table><tr><th>section</th><th>measure</th><th>ours</th>\
         <th>peer</th><th>peer's</th><th>ratio</th><th>target</th><th></th></tr>\n",
    );
    for r in &rows {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{:.3}</td><td>{}</td>\
             <td class=\"n\">{:.3}</td><td class=\"n\">{}×</td><td>{}</td>{}</tr>",
            escape(&r.section),
            escape(&r.measure),
            r.ours,
            escape(&r.peer),
            r.peer_value,
            ratio_text(r.ratio),
            escape(&r.target),
            if r.met {
                "<td>met</td>"
            } else {
                "<td class=\"no\">not met</td>"
            }
        );
    }
    page.push_str("</table>\n</body></html>\n");
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        let row = |section: &str, measure: &str, peer: &str, ours: f64, theirs: f64, unit: &str| {
            serde_json::json!({
                "section": section, "measure": measure, "peer": peer, "ours": ours,
                "peer_value": theirs, "unit": unit, "ratio": ours / theirs,
                "target": "≤ 1.0×", "met": ours <= theirs,
            })
        };
        serde_json::json!({
            "machine": {"cpu": "test cpu", "cores": 2, "kernel": "6.1", "date": "today"},
            "quick": true,
            "rows": [
                row("locks", "lock+unlock (ns)", "std <Mutex>", 4.0, 5.0, "ns"),
                row("locks", "same, private (ns)", "pthread", 9.0, 3.0, "ns"),
                row("large", "Pipe 1P→1C, 8 B (ns/byte)", "pipe", 2.0, 40.0, "ns/byte"),
                row("large", "same", "socket", 2.0, 100.0, "ns/byte"),
                row("large", "Pipe 1P→1C, 64 KiB (ns/byte)", "pipe", 0.1, 0.6, "ns/byte"),
                row("large", "same", "socket", 0.1, 0.2, "ns/byte"),
            ],
        })
    }

    #[test]
    fn every_section_gets_a_chart_with_every_row_and_the_sweep_its_lines() {
        let page = html(&doc()).unwrap();
        assert_eq!(page.matches("<svg").count(), 3, "locks, large, the sweep");
        let names: Vec<String> = charts(&doc())
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["ratios-locks", "ratios-large", "sweep"]);
        // "same" rows read as the row above's name, and text is escaped.
        assert!(
            page.contains("lock+unlock, private (ns)"),
            "the unit once, at the end"
        );
        assert!(page.contains("std &lt;Mutex&gt;"));
        assert!(!page.contains("std <Mutex>"));
        // Ratios printed beside the bars: 0.80× and 3.00×.
        assert!(page.contains("0.80×"));
        assert!(page.contains("3.00×"));
        // The sweep: ours, pipe and socket as lines over 8 B and 64 KiB.
        assert!(page.contains("64 KiB"));
        assert!(page.contains("ours (multiproc Pipe)"));
        assert!(page.contains("<td class=\"no\">not met</td>"));
    }

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(ratio_text(0.0049), "0.0049");
        assert_eq!(ratio_text(0.012), "0.012");
        assert_eq!(ratio_text(0.59), "0.59");
        assert_eq!(ratio_text(3.812), "3.81");
    }

    #[test]
    fn sizes_are_read_from_the_measure() {
        assert_eq!(size_of_measure("Pipe 1P→1C, 8 B (ns/byte)"), Some(8));
        assert_eq!(
            size_of_measure("Pipe 1P→1C, 64 KiB (ns/byte)"),
            Some(64 << 10)
        );
        assert_eq!(
            size_of_measure("Pipe 1P→1C, 64 MiB (ns/byte)"),
            Some(64 << 20)
        );
        assert_eq!(size_of_measure("queue 2P×2C (ns/msg)"), None);
    }

    #[test]
    fn a_document_without_rows_is_an_error_not_a_panic() {
        let e = html(&serde_json::json!({"machine": {}})).unwrap_err();
        assert!(e.to_string().contains("no \"rows\""), "{e}");
        let mut d = doc();
        d["rows"][0]["ours"] = Value::Null;
        assert!(html(&d).unwrap_err().to_string().contains("row 0"));
    }
}
