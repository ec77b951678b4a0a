//! Aligned text tables for the commands that print lists (`ls`, `up`).

/// Lays out rows as aligned columns; `paint` styles a cell after padding.
pub fn table(
    header: &[&str],
    rows: &[Vec<String>],
    paint: impl Fn(usize, &str) -> String,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>, styled: bool| -> String {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let padded = if i == last {
                    c.clone()
                } else {
                    format!("{c:<width$}", width = widths[i])
                };
                if styled { paint(i, &padded) } else { padded }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect(), false);
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone(), true));
    }
    out
}
