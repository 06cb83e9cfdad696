//! Size limits on a SQL expression, checked on its text and tokens before any parser builds
//! a tree from it.
//!
//! Parsers and planners walk an expression by recursion. `NOT NOT NOT ...`, `((((...))))` or
//! `a + a + a + ...` ten thousand times is accepted by the apiserver as a plain string, yet
//! builds a tree deep enough to overflow the stack of whoever walks it: the operator checking
//! columns, the runtime planning with DataFusion, even the tree's own drop. A stack overflow
//! aborts the process, so the one job would take every other job's operator down with it.
//! The limits are far above any expression a person writes and far below any depth that
//! matters.

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::FieldError;
use crate::sql::depth::{OPERATOR_WORDS, is_operator};

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

/// Deepest parenthesis nesting and operator count, read off sqlparser's tokens, which is what
/// the parser reads next: a string literal, a quoted name or a comment holds no operator. The
/// operators are those the depth bound of SQL scripts counts (`sql::depth`). Text the
/// tokenizer refuses (an unclosed quote) is left for the parser, which refuses it the same
/// way before it builds anything; unbalanced parentheses likewise.
fn shape(sql: &str) -> Shape {
    let mut s = Shape::default();
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return s;
    };
    let mut depth = 0usize;
    for token in &tokens {
        match token {
            Token::LParen => {
                depth += 1;
                s.nesting = s.nesting.max(depth);
            }
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) => s.operators += usize::from(OPERATOR_WORDS.contains(&w.keyword)),
            // A statement's end to the script walk; here only a stray character.
            Token::SemiColon => {}
            other => s.operators += usize::from(is_operator(other)),
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
        // A comment holds nothing (a scan of characters counted its `--`, `((`, `+` and
        // `NOT`), nor does a literal with a quote written twice; a comma is no operator.
        assert_eq!(shape("a -- ((+ NOT\n+ b").operators, 1);
        assert_eq!(shape("'it''s (((' = x").operators, 1);
        assert_eq!(shape("coalesce(a, b, c)").operators, 0);
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
