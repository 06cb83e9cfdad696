//! A bound on how deep each statement's syntax tree can be, read off its tokens before
//! anything builds or walks the tree.
//!
//! sqlparser reads a chain (`a OR b OR c ...`, `x + y + ...`, `... UNION ALL ...`,
//! `... JOIN ...`) in a loop, so its own recursion limit never counts one, yet the tree it
//! builds is as deep as the chain is long. Every later walk of that tree recurses once per
//! level: its source positions, the visitors that rewrite window calls, printing it, dropping
//! it, Weir's lowering and per-batch evaluation. A stack overflow aborts the process, and the
//! process is the operator that validates every job, or a job's runtime. So the depth is
//! bounded here, in a loop over the tokens, with an error that names the statement.
//!
//! The bound is an over-estimate, never an under-estimate: within one expression every
//! operator may add a level (a chain is a left-deep tree), and a parenthesised group (or a
//! `CASE ... END`) adds its own depth once, wherever it sits in the expression. A comma or a
//! clause keyword starts a sibling expression, which does not add to the one before it.

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{Pos, SqlError, pos_of};

/// Deepest tree a statement may build. A person's query is a few dozen levels deep; a
/// statement at this bound still parses, plans and runs on a 2 MiB thread stack in an
/// unoptimised build (`sql::tests`), and the expression compiler allows as many operators.
pub const MAX_DEPTH: usize = 256;

/// What ends a group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closer {
    /// The statement itself: `;` or the end of the script.
    Statement,
    Paren,
    Bracket,
    Brace,
    /// `CASE ... END`.
    End,
}

/// One open group and what its contents add up to so far.
struct Group {
    closer: Closer,
    /// Operators in the expression being read.
    run: usize,
    /// Deepest group closed inside the expression being read.
    child: usize,
    /// Deepest expression finished in this group.
    best: usize,
    /// Set operations and joins: each nests the query before it one level deeper.
    chain: usize,
    /// Between `FROM` and the next clause, where a comma is a join.
    in_from: bool,
}

impl Group {
    fn new(closer: Closer) -> Self {
        Self {
            closer,
            run: 0,
            child: 0,
            best: 0,
            chain: 0,
            in_from: false,
        }
    }

    fn end_expression(&mut self) {
        self.best = self.best.max(self.run + self.child);
        self.run = 0;
        self.child = 0;
    }

    fn depth(mut self) -> usize {
        self.end_expression();
        self.best + self.chain + 1
    }
}

/// Keywords that start a new expression beside the one before: clauses, `CASE`'s branches,
/// `AS` (an alias, or the type of a `CAST`).
const STARTS_EXPRESSION: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "QUALIFY",
    "WINDOW",
    "LIMIT",
    "OFFSET",
    "ON",
    "USING",
    "WHEN",
    "THEN",
    "ELSE",
    "AS",
    "INSERT",
    "INTO",
    "WITH",
    "VALUES",
    "PARTITION",
];
/// Clauses after which a comma no longer joins tables.
const ENDS_FROM: &[&str] = &[
    "SELECT", "WHERE", "GROUP", "HAVING", "ORDER", "QUALIFY", "WINDOW", "LIMIT", "OFFSET",
];
/// Keywords that nest the query before them one level deeper.
const CHAINS_QUERIES: &[&str] = &["UNION", "INTERSECT", "EXCEPT", "JOIN"];
/// Keywords that are (or belong to) an operator in an expression.
const OPERATOR_WORDS: &[&str] = &[
    "AND", "OR", "NOT", "IS", "LIKE", "ILIKE", "SIMILAR", "BETWEEN", "IN", "COLLATE", "AT",
    "ESCAPE", "DIV", "XOR", "REGEXP", "RLIKE", "OVERLAPS", "ANY", "ALL", "SOME",
];

/// `Ok` when every statement of the tokenised script is within [`MAX_DEPTH`].
///
/// # Errors
/// One error per statement over the bound, at the statement's first token.
pub(super) fn check(tokens: &[TokenWithSpan]) -> Result<(), Vec<SqlError>> {
    let mut errs = Vec::new();
    let mut stack = vec![Group::new(Closer::Statement)];
    let mut statement = 0usize;
    let mut start: Option<Pos> = None;
    let mut finish = |stack: &mut Vec<Group>, start: &mut Option<Pos>, statement: &mut usize| {
        // Unclosed groups are the parser's to name; their depth still counts.
        while stack.len() > 1 {
            if let Some(g) = stack.pop() {
                fold(stack, g);
            }
        }
        let root = std::mem::replace(&mut stack[0], Group::new(Closer::Statement));
        let depth = root.depth();
        if let Some(at) = start.take() {
            *statement += 1;
            if depth > MAX_DEPTH {
                errs.push(SqlError {
                    statement: Some(*statement),
                    at: Some(at),
                    message: format!(
                        "is nested up to {depth} levels deep (operators chained in one expression, parentheses, joins and set operations); at most {MAX_DEPTH} are allowed: a list of alternatives reads better as `x IN (a, b, ...)`, and a long expression can be split over views (`CREATE VIEW`)"
                    ),
                });
            }
        }
    };
    for t in tokens {
        let token = &t.token;
        if matches!(token, Token::Whitespace(_) | Token::EOF) {
            continue;
        }
        if *token == Token::SemiColon && stack.len() == 1 {
            finish(&mut stack, &mut start, &mut statement);
            continue;
        }
        start.get_or_insert(pos_of(t.span.start));
        let Some(top) = stack.last_mut() else {
            break;
        };
        match token {
            Token::LParen => stack.push(Group::new(Closer::Paren)),
            Token::LBracket => stack.push(Group::new(Closer::Bracket)),
            Token::LBrace => stack.push(Group::new(Closer::Brace)),
            Token::RParen => close(&mut stack, Closer::Paren),
            Token::RBracket => close(&mut stack, Closer::Bracket),
            Token::RBrace => close(&mut stack, Closer::Brace),
            Token::Comma => {
                if top.in_from {
                    top.chain += 1;
                }
                top.end_expression();
            }
            Token::Word(w) if w.quote_style.is_none() => {
                let is = |list: &[&str]| list.iter().any(|k| w.value.eq_ignore_ascii_case(k));
                if w.value.eq_ignore_ascii_case("CASE") {
                    top.run += 1;
                    stack.push(Group::new(Closer::End));
                } else if w.value.eq_ignore_ascii_case("END") {
                    close(&mut stack, Closer::End);
                } else if is(CHAINS_QUERIES) {
                    top.chain += 1;
                    top.in_from = w.value.eq_ignore_ascii_case("JOIN");
                    top.end_expression();
                } else if is(STARTS_EXPRESSION) {
                    if w.value.eq_ignore_ascii_case("FROM") {
                        top.in_from = true;
                    } else if is(ENDS_FROM) {
                        top.in_from = false;
                    }
                    top.end_expression();
                } else if is(OPERATOR_WORDS) {
                    top.run += 1;
                }
            }
            other if is_operator(other) => top.run += 1,
            _ => {}
        }
    }
    finish(&mut stack, &mut start, &mut statement);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Close the innermost group if `closer` ends it; a stray closer is the parser's to name.
fn close(stack: &mut Vec<Group>, closer: Closer) {
    if stack.len() > 1
        && stack.last().is_some_and(|g| g.closer == closer)
        && let Some(g) = stack.pop()
    {
        fold(stack, g);
    }
}

/// A closed group is one operand of the expression around it, as deep as its own contents.
fn fold(stack: &mut [Group], g: Group) {
    if let Some(parent) = stack.last_mut() {
        parent.child = parent.child.max(g.depth());
    }
}

/// Whether a token (other than a word) joins operands: everything but literals, names and
/// punctuation. An unknown token counts, which can only over-estimate.
fn is_operator(t: &Token) -> bool {
    !matches!(
        t,
        Token::Number(..)
            | Token::Char(_)
            | Token::Placeholder(_)
            | Token::Word(_)
            | Token::Period
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}
