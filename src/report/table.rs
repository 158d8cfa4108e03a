//! A table of text cells printed as aligned columns, Markdown, CSV or JSON.

/// Aligned columns: text left-aligned, numbers right-aligned.
pub fn render_text(header: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..header.len())
        .map(|c| {
            let cells: Vec<&String> = rows.iter().filter_map(|r| r.get(c)).filter(|s| !s.is_empty()).collect();
            !cells.is_empty()
                && cells.iter().all(|s| s.trim_start_matches(['-', '+']).starts_with(|ch: char| ch.is_ascii_digit()))
        })
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(
                |(c, s)| if numeric[c] { format!("{s:>w$}", w = widths[c]) } else { format!("{s:<w$}", w = widths[c]) },
            )
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// A GitHub-flavoured Markdown table.
pub fn render_markdown(header: &[String], rows: &[Vec<String>]) -> String {
    let esc = |s: &String| s.replace('|', "\\|");
    let mut out = format!("| {} |\n", header.iter().map(esc).collect::<Vec<_>>().join(" | "));
    out.push_str(&format!("|{}|\n", header.iter().map(|_| "---").collect::<Vec<_>>().join("|")));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.iter().map(esc).collect::<Vec<_>>().join(" | ")));
    }
    out
}

/// CSV with a header row.
pub fn render_csv(header: &[String], rows: &[Vec<String>]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
}

/// A JSON array with one object per row; cells that read as numbers become numbers.
pub fn render_json(header: &[String], rows: &[Vec<String>]) -> anyhow::Result<String> {
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = rows
        .iter()
        .map(|r| {
            header
                .iter()
                .zip(r)
                .map(|(h, v)| {
                    let value = if v.is_empty() {
                        serde_json::Value::Null
                    } else if let Ok(i) = v.parse::<i64>() {
                        serde_json::json!(i)
                    } else {
                        match v.parse::<f64>() {
                            Ok(x) if x.is_finite() => serde_json::json!(x),
                            _ => serde_json::Value::String(v.clone()),
                        }
                    };
                    (h.clone(), value)
                })
                .collect()
        })
        .collect();
    Ok(serde_json::to_string_pretty(&objects)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_numbers_right_and_text_left() {
        let h = vec!["run".to_string(), "acc".into()];
        let rows = vec![vec!["a".to_string(), "0.5".into()], vec!["bbb".to_string(), "10.25".into()]];
        assert_eq!(render_text(&h, &rows), "run    acc\na      0.5\nbbb  10.25\n");
        assert_eq!(render_markdown(&h, &rows), "| run | acc |\n|---|---|\n| a | 0.5 |\n| bbb | 10.25 |\n");
        assert!(render_json(&h, &rows).unwrap().contains("\"acc\": 10.25"));
    }
}
