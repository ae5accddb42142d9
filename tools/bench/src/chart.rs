//! The PNG: one horizontal bar per row, FerroHSM's advantage over SoftHSM2 on a log scale
//! (right of 1× FerroHSM is better). Text needs a TrueType font; without one the bars are
//! drawn alone.

use crate::model::Res;
use crate::report::Row;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const W: u32 = 1100;
const ROW_H: u32 = 22;
const TOP: u32 = 60;
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

pub fn render(rows: &[Row], font_path: &Path) -> Res<Vec<u8>> {
    let bars: Vec<(&str, f64)> = rows
        .iter()
        .filter_map(|r| r.advantage().map(|a| (r.short.as_str(), a)))
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
    bars: &[(&str, f64)],
    h: u32,
    text: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let lo_exp = bars
        .iter()
        .map(|b| b.1.log10().floor() as i32)
        .min()
        .unwrap_or(-1)
        .min(-1);
    let hi_exp = bars
        .iter()
        .map(|b| b.1.log10().ceil() as i32)
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
            "FerroHSM / SoftHSM2 (log scale; right of 1× FerroHSM is better; ms and MiB rows inverted)",
            (W as i32 / 2, 18),
            ("sans-serif", 18)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    }
    let one = x_of(1.0);
    for (i, (name, v)) in bars.iter().enumerate() {
        let y = y_top + (i as u32 * ROW_H) as i32;
        let xv = x_of(*v);
        let color = if *v >= 1.0 {
            RGBColor(46, 139, 87)
        } else {
            RGBColor(200, 60, 50)
        };
        let (a, b) = if xv >= one { (one, xv) } else { (xv, one) };
        root.draw(&Rectangle::new(
            [(a, y + 3), (b.max(a + 1), y + ROW_H as i32 - 3)],
            color.filled(),
        ))?;
        if text {
            let style = ("sans-serif", 14).into_font().color(&BLACK);
            root.draw(&Text::new(
                name.to_string(),
                (x0 - 8, y + ROW_H as i32 / 2),
                style.pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            let label = if *v >= 10.0 {
                format!("{v:.0}×")
            } else {
                format!("{v:.2}×")
            };
            // Right of the bar's end; for bars left of 1×, right of the 1× line.
            let (lx, hp) = if *v >= 1.0 {
                (xv + 4, HPos::Left)
            } else {
                (one + 4, HPos::Left)
            };
            root.draw(&Text::new(
                label,
                (lx, y + ROW_H as i32 / 2),
                style.pos(Pos::new(hp, VPos::Center)),
            ))?;
        }
    }
    Ok(())
}
