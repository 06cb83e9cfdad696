//! Maps a field path (`transforms[1].window.keyBy`) to the line it stands on in the YAML text.
//!
//! serde reports its own errors with a location, but checks made after parsing (an unknown
//! column in an expression, a window on a non-timestamp field) only know the field path.
//! Users fix manifests by line, so every error gets one; this index is how.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Field path -> 1-based line, built once per file. Performs no I/O.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
    /// For values written as block scalars (`sql: |`), the line their text starts on.
    blocks: HashMap<String, usize>,
    /// Values whose line breaks YAML turns into spaces: folded (`>`), plain and quoted
    /// scalars. Only literal blocks (`|`) keep a script's lines.
    joined: std::collections::HashSet<String>,
}

struct Collect(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Collect {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

impl LineIndex {
    /// Index every mapping key and sequence item of `src`. Invalid YAML yields an empty index
    /// (the parse error is reported by serde with its own location).
    #[must_use]
    pub fn new(src: &str) -> Self {
        let mut collect = Collect(Vec::new());
        let mut parser = Parser::new_from_str(src);
        if parser.load(&mut collect, false).is_err() {
            return Self::default();
        }
        let mut index = Self::default();
        let events = &collect.0;
        let mut i = 0;
        while i < events.len() {
            match events[i].0 {
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    i = index.walk(events, i, &mut String::new());
                }
                _ => i += 1,
            }
        }
        index
    }

    /// The line of `path`, or of its nearest indexed ancestor.
    #[must_use]
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    fn walk(&mut self, events: &[(Event, Marker)], mut i: usize, path: &mut String) -> usize {
        match &events[i].0 {
            Event::MappingStart(..) => {
                i += 1;
                while i < events.len() {
                    let (ev, mark) = &events[i];
                    let key = match ev {
                        Event::MappingEnd => return i + 1,
                        Event::Scalar(k, ..) => k.clone(),
                        _ => String::new(),
                    };
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&key);
                    self.lines.entry(path.clone()).or_insert(mark.line());
                    i = self.skip_key(events, i);
                    if let Some((Event::Scalar(_, style, ..), _)) = events.get(i) {
                        if matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) {
                            // A block scalar's text starts on the line after its `|` or `>`,
                            // which stands on the key's line.
                            self.blocks.entry(path.clone()).or_insert(mark.line() + 1);
                        }
                        if *style != TScalarStyle::Literal {
                            self.joined.insert(path.clone());
                        }
                    }
                    i = self.walk(events, i, path);
                    path.truncate(len);
                }
                i
            }
            Event::SequenceStart(..) => {
                i += 1;
                let mut n = 0;
                while i < events.len() {
                    if matches!(events[i].0, Event::SequenceEnd) {
                        return i + 1;
                    }
                    let len = path.len();
                    path.push_str(&format!("[{n}]"));
                    self.lines.entry(path.clone()).or_insert(events[i].1.line());
                    i = self.walk(events, i, path);
                    path.truncate(len);
                    n += 1;
                }
                i
            }
            _ => i + 1,
        }
    }

    /// The file line of line `within` (1-based) of the block scalar at `path`, e.g. the line
    /// of an SQL error inside `sql: |`. `None` when the value is not a block scalar.
    #[must_use]
    pub fn line_within(&self, path: &str, within: usize) -> Option<usize> {
        self.blocks
            .get(path)
            .map(|start| start + within.saturating_sub(1))
    }

    /// Whether the value at `path` is a scalar whose line breaks YAML replaced by spaces.
    #[must_use]
    pub fn joins_lines(&self, path: &str) -> bool {
        self.joined.contains(path)
    }

    /// Keys are scalars in every manifest we read; a complex key is skipped whole.
    fn skip_key(&mut self, events: &[(Event, Marker)], i: usize) -> usize {
        match events[i].0 {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                self.walk(events, i, &mut String::from("?"))
            }
            _ => i + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_items_and_falls_back_to_the_nearest_ancestor() {
        let src = "\
name: x
source:
  schema:
    - {name: a, type: int64}
    - name: b
      type: string
transforms:
  - filter: \"a > 1\"
  - window:
      tumbling: 10s
      keyBy: [a]
";
        let idx = LineIndex::new(src);
        let cases: &[(&str, usize)] = &[
            ("name", 1),
            ("source.schema", 3),
            ("source.schema[0]", 4),
            ("source.schema[1].type", 6),
            ("transforms[0].filter", 8),
            ("transforms[1].window.tumbling", 10),
            ("transforms[1].window.keyBy[0]", 11),
            ("transforms[1].window.aggregates", 9),
        ];
        for (path, line) in cases {
            assert_eq!(idx.line_of(path), Some(*line), "{path}");
        }
        assert_eq!(idx.line_of("nothing"), None);
    }

    #[test]
    fn lines_inside_a_block_scalar_map_to_file_lines() {
        let src = "name: x\nsql: |\n  INSERT INTO a\n  SELECT b\n  FROM c\nother: \"d\"\n";
        let idx = LineIndex::new(src);
        assert_eq!(idx.line_of("sql"), Some(2));
        assert_eq!(idx.line_within("sql", 1), Some(3));
        assert_eq!(idx.line_within("sql", 3), Some(5));
        assert_eq!(idx.line_within("other", 1), None);
    }
}
