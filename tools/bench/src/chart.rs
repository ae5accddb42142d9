//! The PNG: per row, FerroHSM's advantage over SoftHSM2 and (when it ran) over Kryoptic,
//! two horizontal bars on a log scale (right of 1× FerroHSM is better). Crypto rows appear
//! once, at 1 thread (the 2-thread ratios are in the table). Text needs a TrueType font;
//! without one the bars are drawn alone.

use crate::model::Res;
use crate::report::Row;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const W: u32 = 1100;
const ROW_H: u32 = 26;
const TOP: u32 = 70;
const BOTTOM: u32 = 40;
const LEFT: i32 = 330;
const RIGHT: i32 = 80;

/// Registers the TTF as "sans-serif"; false when it cannot be read or parsed.
fn font(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        eprintln!(
            "chart: no font at {} (Debian: fonts-dejavu-core); drawing without text",
            path.display()
        );
        return false;
    };
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
}

const SOFT: RGBColor = RGBColor(60, 120, 190);
const KRYO: RGBColor = RGBColor(230, 140, 30);

/// One chart row: its label and the two ratios.
type Bar<'a> = (&'a str, Option<f64>, Option<f64>);

pub fn render(rows: &[Row], font_path: &Path) -> Res<Vec<u8>> {
    let bars: Vec<Bar<'_>> = rows
        .iter()
        .filter(|r| r.crypto.is_none_or(|c| c.2 == 1))
        .map(|r| (r.short.as_str(), r.advantage(), r.advantage_kryo()))
        .filter(|b| b.1.is_some() || b.2.is_some())
        .collect();
    let h = TOP + BOTTOM + ROW_H * bars.len().max(1) as u32;
    let text = font(font_path);
    let mut buf = vec![0u8; (W * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| format!("chart: {e}"))?;
        draw(&root, &bars, h, text).map_err(|e| format!("chart: {e}"))?;
        root.present().map_err(|e| format!("chart: {e}"))?;
    }
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, W, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&buf)?;
    }
    Ok(png)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    bars: &[Bar<'_>],
    h: u32,
    text: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let values = || bars.iter().flat_map(|b| [b.1, b.2]).flatten();
    let lo_exp = values()
        .map(|v| v.log10().floor() as i32)
        .min()
        .unwrap_or(-1)
        .min(-1);
    let hi_exp = values()
        .map(|v| v.log10().ceil() as i32)
        .max()
        .unwrap_or(1)
        .max(1);
    let (x0, x1) = (LEFT, W as i32 - RIGHT);
    let x_of = |v: f64| {
        let t = (v.log10() - lo_exp as f64) / (hi_exp - lo_exp) as f64;
        x0 + (t * (x1 - x0) as f64).round() as i32
    };
    let y_top = TOP as i32;
    let y_bot = (h - BOTTOM) as i32;

    // Grid: one line per power of ten, the 1× line darker.
    for e in lo_exp..=hi_exp {
        let x = x_of(10f64.powi(e));
        let color = if e == 0 {
            BLACK
        } else {
            RGBColor(210, 210, 210)
        };
        root.draw(&PathElement::new(vec![(x, y_top - 5), (x, y_bot)], color))?;
        if text {
            let label = if e >= 0 {
                format!("{}×", 10u64.pow(e as u32))
            } else {
                format!("{}×", 10f64.powi(e))
            };
            root.draw(&Text::new(
                label,
                (x, y_bot + 6),
                ("sans-serif", 14)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
    }
    if text {
        root.draw(&Text::new(
            "FerroHSM's advantage (log scale; right of 1× FerroHSM is better; ms and MiB rows inverted)",
            (W as i32 / 2, 16),
            ("sans-serif", 18)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        // Legend.
        let mut x = W as i32 / 2 - 200;
        for (color, name) in [(SOFT, "FerroHSM / SoftHSM2"), (KRYO, "FerroHSM / Kryoptic")] {
            root.draw(&Rectangle::new([(x, 34), (x + 16, 46)], color.filled()))?;
            root.draw(&Text::new(
                name,
                (x + 22, 40),
                ("sans-serif", 14)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            x += 220;
        }
    }
    let one = x_of(1.0);
    let half = (ROW_H as i32 - 4) / 2;
    for (i, (name, soft, kryo)) in bars.iter().enumerate() {
        let y = y_top + (i as u32 * ROW_H) as i32;
        if text {
            root.draw(&Text::new(
                name.to_string(),
                (x0 - 8, y + ROW_H as i32 / 2),
                ("sans-serif", 14)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
        }
        for (k, (v, color)) in [(soft, SOFT), (kryo, KRYO)].into_iter().enumerate() {
            let Some(v) = *v else { continue };
            let top = y + 2 + k as i32 * half;
            let xv = x_of(v);
            let (a, b) = if xv >= one { (one, xv) } else { (xv, one) };
            root.draw(&Rectangle::new(
                [(a, top), (b.max(a + 1), top + half - 1)],
                color.filled(),
            ))?;
            if text {
                let label = if v >= 10.0 {
                    format!("{v:.0}×")
                } else {
                    format!("{v:.2}×")
                };
                // Right of the bar's end; for bars left of 1×, right of the 1× line.
                let lx = if v >= 1.0 { xv + 4 } else { one + 4 };
                root.draw(&Text::new(
                    label,
                    (lx, top + half / 2),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
            }
        }
    }
    Ok(())
}
