//! Splitting a manifest file into documents and parsing each into a generic
//! value, so one broken document does not hide the others.

use std::path::Path;

use serde_json::Value;

/// One document of a manifest file, parsed into a generic value.
pub struct Document {
    /// 1-based index among the file's non-empty documents.
    pub index: usize,
    /// 1-based line of the document's first content line in the file.
    pub line: usize,
    pub value: Result<Value, String>,
}

/// Splits `text` into documents and parses each one. JSON files (by
/// extension) hold a single document; YAML files may hold several,
/// separated by `---` lines. Documents with no content (only comments or
/// blank lines) are left out and not counted.
pub fn parse_documents(file: &Path, text: &str) -> Vec<Document> {
    if is_json(file) {
        let value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"));
        return vec![Document { index: 1, line: 1, value }];
    }
    split_yaml(text)
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| Document { index: i + 1, line: chunk.content_line(), value: parse_yaml(&chunk) })
        .collect()
}

fn is_json(file: &Path) -> bool {
    file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// The lines of one YAML document.
struct Chunk<'a> {
    /// 1-based line number of `lines[0]` in the file.
    line: usize,
    lines: Vec<&'a str>,
}

impl Chunk<'_> {
    /// 1-based line number of the first line with content.
    fn content_line(&self) -> usize {
        self.line + self.lines.iter().position(|l| has_content(l)).unwrap_or(0)
    }
}

/// Splits a YAML stream at its document markers (`---` starts a document,
/// `...` ends one). YAML forbids these markers at the start of a line inside
/// any content, so a line-based split is exact.
fn split_yaml(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut current = Chunk { line: 1, lines: Vec::new() };
    for (i, line) in text.lines().enumerate() {
        let marker = document_marker(line);
        if let Some(rest) = marker {
            chunks.push(std::mem::replace(&mut current, Chunk { line: i + 1, lines: Vec::new() }));
            current.lines.push(rest);
        } else {
            current.lines.push(line);
        }
    }
    chunks.push(current);
    chunks.retain(|c| c.lines.iter().any(|l| has_content(l)));
    chunks
}

/// For a document marker line, what follows the marker on the line.
fn document_marker(line: &str) -> Option<&str> {
    ["---", "..."].into_iter().find_map(|marker| {
        let rest = line.strip_prefix(marker)?;
        (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(rest)
    })
}

/// Whether a line holds YAML content (not blank, a comment or a directive).
fn has_content(line: &str) -> bool {
    let trimmed = line.trim_start();
    !(trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with('%'))
}

fn parse_yaml(chunk: &Chunk<'_>) -> Result<Value, String> {
    // Leading newlines keep the parser's line numbers those of the file.
    let mut text = "\n".repeat(chunk.line - 1);
    for line in chunk.lines.iter().filter(|l| !l.starts_with('%')) {
        text.push_str(line);
        text.push('\n');
    }
    serde_norway::from_str(&text).map_err(|e| format!("invalid YAML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(usize, usize, Result<Value, String>)> {
        parse_documents(Path::new("a.yaml"), text).into_iter().map(|d| (d.index, d.line, d.value)).collect()
    }

    #[test]
    fn splits_at_markers_and_skips_empty_documents() {
        let docs = values("---\n# only a comment\n---\na: 1\n--- \nb: 2\n...\n---\n\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0], (1, 4, Ok(serde_json::json!({"a": 1}))));
        assert_eq!(docs[1], (2, 6, Ok(serde_json::json!({"b": 2}))));
    }

    #[test]
    fn a_broken_document_does_not_hide_the_next() {
        let docs = values("a: [1\n---\nb: 2\n");
        assert!(docs[0].2.as_ref().unwrap_err().contains("invalid YAML"));
        assert_eq!(docs[1].2, Ok(serde_json::json!({"b": 2})));
    }

    #[test]
    fn error_lines_are_lines_of_the_file() {
        let docs = values("a: 1\n---\nb: 2\nc: [\n");
        let err = docs[1].2.as_ref().unwrap_err();
        assert!(err.contains("line 5") || err.contains("line 4"), "{err}");
    }

    #[test]
    fn markers_need_a_separator() {
        let docs = values("a: |\n  ---x\n---x: 1\n");
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn json_is_one_document() {
        let docs = parse_documents(Path::new("a.json"), r#"{"kind": "List", "items": []}"#);
        assert_eq!(docs.len(), 1);
        assert!(docs[0].value.is_ok());
    }
}
