//! Size limits on a SQL expression, checked on its text before any parser sees it.
//!
//! Parsers and planners walk an expression by recursion. `NOT NOT NOT ...`, `((((...))))` or
//! `a + a + a + ...` ten thousand times is accepted by the apiserver as a plain string, yet
//! builds a tree deep enough to overflow the stack of whoever walks it: the operator checking
//! columns, the runtime planning with DataFusion, even the tree's own drop. A stack overflow
//! aborts the process, so the one job would take every other job's operator down with it.
//! The limits are far above any expression a person writes and far below any depth that
//! matters.

use super::FieldError;

/// Longest expression, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting of parentheses.
pub const MAX_NESTING: usize = 32;
/// Most operators (`AND`, `+`, `=`, `NOT`, ...) in one expression; a chain of them is as deep
/// as it is long.
pub const MAX_OPERATORS: usize = 256;

/// `Ok` when `sql` is within the limits; otherwise the error for the field at `path`.
///
/// # Errors
/// The first limit exceeded, naming the field.
pub fn check(path: &str, sql: &str) -> Result<(), FieldError> {
    if sql.len() > MAX_LEN {
        return Err(FieldError::new(
            path,
            format!(
                "expression is {} bytes long; at most {MAX_LEN} are allowed",
                sql.len()
            ),
        ));
    }
    let shape = shape(sql);
    if shape.nesting > MAX_NESTING {
        return Err(FieldError::new(
            path,
            format!(
                "parentheses nest {} deep; at most {MAX_NESTING} levels are allowed",
                shape.nesting
            ),
        ));
    }
    if shape.operators > MAX_OPERATORS {
        return Err(FieldError::new(
            path,
            format!(
                "expression has {} operators; at most {MAX_OPERATORS} are allowed (split it over several steps)",
                shape.operators
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
struct Shape {
    nesting: usize,
    operators: usize,
}

/// Deepest parenthesis nesting and operator count, outside string literals and quoted
/// identifiers. Unbalanced text is left for the parser to name.
fn shape(sql: &str) -> Shape {
    const WORDS: &[&str] = &["and", "or", "not", "is", "like", "ilike", "between", "in"];
    let mut s = Shape::default();
    let mut depth = 0usize;
    let mut chars = sql.chars().peekable();
    let mut in_symbol = false;
    while let Some(c) = chars.next() {
        let symbol = matches!(
            c,
            '+' | '-' | '*' | '/' | '%' | '<' | '>' | '=' | '!' | '|' | '&' | '^' | '~'
        );
        if symbol && !in_symbol {
            s.operators += 1;
        }
        in_symbol = symbol;
        match c {
            '(' => {
                depth += 1;
                s.nesting = s.nesting.max(depth);
            }
            ')' => depth = depth.saturating_sub(1),
            '\'' | '"' | '`' => {
                // A quote inside is written twice, which reads as leaving and re-entering.
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' {
                        word.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if WORDS.iter().any(|w| word.eq_ignore_ascii_case(w)) {
                    s.operators += 1;
                }
            }
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn everyday_expressions_pass() {
        for sql in [
            "amount > 0",
            "amount * quantity",
            "store_id IN ('a', 'b') AND NOT (amount BETWEEN 1 AND 5)",
            "CASE WHEN a > 0 THEN 'pos' ELSE 'neg' END",
            "'((((((' || name",
        ] {
            check("transforms[0].filter", sql).unwrap();
        }
    }

    #[test]
    fn shapes_are_counted_outside_literals() {
        assert_eq!(
            shape("(a + b) * c >= 2 AND name = ')))' OR \"x(\" IS NULL"),
            Shape {
                nesting: 1,
                operators: 7
            }
        );
        assert_eq!(shape("a<>b").operators, 1);
        assert_eq!(shape("Android").operators, 0);
    }

    #[test]
    fn deep_or_long_expressions_are_refused_naming_the_field() {
        let cases = [
            (
                format!("{}1{}", "(".repeat(200), ")".repeat(200)),
                "nest 200",
            ),
            ("NOT ".repeat(400) + "x", "400 operators"),
            ("a + ".repeat(300) + "a", "300 operators"),
            ("x".repeat(MAX_LEN + 1), "4097 bytes"),
        ];
        for (sql, says) in cases {
            let e = check("transforms[2].filter", &sql).unwrap_err();
            assert_eq!(e.path, "transforms[2].filter");
            assert!(e.message.contains(says), "{}", e.message);
        }
    }
}
