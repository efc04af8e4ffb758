//! Charts as inline SVG, drawn on the server: no script and no chart
//! library needed, and the CSP stays strict (presentation attributes only,
//! no `style`). Each chart has a title for assistive technology; the pages
//! show the same numbers in a table beside it.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Colours with at least 3:1 contrast against white (WCAG 1.4.11).
const PALETTE: [&str; 8] = [
    "#1f4e79", "#b8430f", "#2e7d32", "#6a1b9a", "#8d6e00", "#00695c", "#ad1457", "#37474f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Stacked bars: one bar per week, one colour per recipient, a legend.
pub fn stacked_weeks(weeks: &[String], series: &BTreeMap<String, Vec<u64>>) -> String {
    let (w, h, left, bottom, top) = (720.0, 260.0, 40.0, 40.0, 10.0);
    let n = weeks.len().max(1) as f64;
    let totals: Vec<u64> = (0..weeks.len())
        .map(|i| {
            series
                .values()
                .map(|s| s.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_h = h - bottom - top;
    let slot = (w - left) / n;
    let legend_h = 20.0 * series.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-weeks-title" viewBox="0 0 {w} {}" class="chart"><title id="chart-weeks-title">Verstrekkingen per week, per ontvanger</title>"##,
        h + legend_h + 10.0
    );
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{w}" y2="{}" stroke="#333"/>"##,
        h - bottom,
        h - bottom
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#222">{}</text>"##,
        left - 4.0,
        top + 10.0,
        max as u64
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#222">0</text>"##,
        left - 4.0,
        h - bottom
    );
    for (i, label) in weeks.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.15;
        let bw = slot * 0.7;
        let mut y = h - bottom;
        for (k, values) in series.values().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let bh = v as f64 / max * plot_h;
            y -= bh;
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{}"/>"##,
                PALETTE[k % PALETTE.len()]
            );
        }
        if i % 2 == 0 || weeks.len() <= 8 {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle" fill="#222">{}</text>"##,
                x + bw / 2.0,
                h - bottom + 14.0,
                esc(label.get(5..).unwrap_or(label))
            );
        }
    }
    for (k, name) in series.keys().enumerate() {
        let y = h + 4.0 + 20.0 * k as f64;
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}" font-size="12" fill="#222">{}</text>"##,
            PALETTE[k % PALETTE.len()],
            left + 18.0,
            y + 11.0,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars, one per key.
pub fn bars(values: &BTreeMap<String, u64>) -> String {
    let (w, row, label_w) = (720.0, 24.0, 260.0);
    let h = row * values.len().max(1) as f64 + 10.0;
    let max = values.values().copied().max().unwrap_or(0).max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-refusals-title" viewBox="0 0 {w} {h}" class="chart"><title id="chart-refusals-title">Weigeringen per redencode</title>"##
    );
    for (i, (k, v)) in values.iter().enumerate() {
        let y = 5.0 + row * i as f64;
        let bw = (*v as f64 / max) * (w - label_w - 50.0);
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="end" fill="#222">{}</text><rect x="{label_w}" y="{y}" width="{bw:.1}" height="{}" fill="#b8430f"/><text x="{:.1}" y="{}" font-size="12" fill="#222">{v}</text>"##,
            label_w - 6.0,
            y + 15.0,
            esc(k),
            row - 6.0,
            label_w + bw + 4.0,
            y + 15.0
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_no_style_attribute_is_used() {
        let mut series = BTreeMap::new();
        series.insert("<b>&\"x".to_string(), vec![1, 2]);
        let svg = stacked_weeks(&["2026-11-30".into(), "2026-12-07".into()], &series);
        assert!(svg.contains("&lt;b&gt;&amp;&quot;x"));
        assert!(!svg.contains("style="));
        let mut v = BTreeMap::new();
        v.insert("purpose-missing".to_string(), 3);
        let svg = bars(&v);
        assert!(svg.contains(">3</text>") && !svg.contains("style="));
    }
}
