//! `--output table|json|csv` rendering shared by every command that prints data.

use std::io::{self, Write};

/// How a command prints its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// JSON for programs.
    Json,
    /// CSV (RFC 4180) for spreadsheets.
    Csv,
    /// SARIF 2.1.0 for code-scanning tools (`check`; most other commands print JSON).
    Sarif,
}

/// A table of rows with named columns.
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
    /// Print the header in upper case (the default); query results keep their column names.
    pub upper_header: bool,
}

impl Table {
    /// A table with these columns.
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            upper_header: true,
        }
    }

    /// Append a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Print as aligned text.
    pub fn print_text(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count().min(80));
                }
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let c: String = if c.chars().count() > 80 {
                    c.chars().take(77).collect::<String>() + "..."
                } else {
                    c.clone()
                };
                if i + 1 == cells.len() {
                    s.push_str(&c);
                } else {
                    s.push_str(&format!("{c:<w$}  "));
                }
            }
            s.trim_end().to_string()
        };
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                if self.upper_header {
                    c.to_uppercase()
                } else {
                    c.clone()
                }
            })
            .collect();
        writeln!(w, "{}", line(&header))?;
        for r in &self.rows {
            writeln!(w, "{}", line(r))?;
        }
        Ok(())
    }

    /// Print as CSV.
    pub fn print_csv(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{}",
            self.columns
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(",")
        )?;
        for r in &self.rows {
            writeln!(
                w,
                "{}",
                r.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",")
            )?;
        }
        Ok(())
    }
}

/// Quote a CSV cell when needed (RFC 4180).
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_cell("a"), "a");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn text_alignment() {
        let mut t = Table::new(&["name", "n"]);
        t.row(vec!["alpha".into(), "1".into()]);
        t.row(vec!["b".into(), "22".into()]);
        let mut out = Vec::new();
        t.print_text(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME   N\nalpha  1\nb      22\n"
        );
    }
}
