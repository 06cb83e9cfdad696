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

use sqlparser::keywords::Keyword;
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

/// Clauses after `FROM`: each starts a new expression, and after one a comma no longer joins
/// tables.
const ENDS_FROM: &[Keyword] = &[
    Keyword::SELECT,
    Keyword::WHERE,
    Keyword::GROUP,
    Keyword::HAVING,
    Keyword::ORDER,
    Keyword::QUALIFY,
    Keyword::WINDOW,
    Keyword::LIMIT,
    Keyword::OFFSET,
];
/// The other keywords that start a new expression beside the one before: `CASE`'s branches,
/// join conditions, `AS` (an alias, or the type of a `CAST`). `FROM` does too, and starts a
/// list in which a comma joins tables.
const STARTS_EXPRESSION: &[Keyword] = &[
    Keyword::ON,
    Keyword::USING,
    Keyword::WHEN,
    Keyword::THEN,
    Keyword::ELSE,
    Keyword::AS,
    Keyword::INSERT,
    Keyword::INTO,
    Keyword::WITH,
    Keyword::VALUES,
    Keyword::PARTITION,
];
/// Keywords that nest the query before them one level deeper.
const CHAINS_QUERIES: &[Keyword] = &[
    Keyword::UNION,
    Keyword::INTERSECT,
    Keyword::EXCEPT,
    Keyword::JOIN,
];
/// Keywords that are (or belong to) an operator in an expression.
pub(crate) const OPERATOR_WORDS: &[Keyword] = &[
    Keyword::AND,
    Keyword::OR,
    Keyword::NOT,
    Keyword::IS,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::SIMILAR,
    Keyword::BETWEEN,
    Keyword::IN,
    Keyword::COLLATE,
    Keyword::AT,
    Keyword::ESCAPE,
    Keyword::DIV,
    Keyword::XOR,
    Keyword::REGEXP,
    Keyword::RLIKE,
    Keyword::OVERLAPS,
    Keyword::ANY,
    Keyword::ALL,
    Keyword::SOME,
];

/// The statements read so far, and the errors of those over the bound.
#[derive(Default)]
struct Statements {
    /// How many statements have ended.
    count: usize,
    /// The first token of the statement being read, once it has one.
    start: Option<Pos>,
    errs: Vec<SqlError>,
}

impl Statements {
    /// End the statement being read: close what it left open and measure it.
    fn finish(&mut self, stack: &mut Vec<Group>) {
        // Unclosed groups are the parser's to name; their depth still counts.
        while stack.len() > 1 {
            if let Some(g) = stack.pop() {
                fold(stack, g);
            }
        }
        let root = std::mem::replace(&mut stack[0], Group::new(Closer::Statement));
        let depth = root.depth();
        let Some(at) = self.start.take() else {
            return; // nothing but whitespace since the last `;`
        };
        self.count += 1;
        if depth > MAX_DEPTH {
            self.errs.push(SqlError {
                statement: Some(self.count),
                at: Some(at),
                message: format!(
                    "is nested up to {depth} levels deep (operators chained in one expression, parentheses, joins and set operations); at most {MAX_DEPTH} are allowed: a list of alternatives reads better as `x IN (a, b, ...)`, and a long expression can be split over views (`CREATE VIEW`)"
                ),
            });
        }
    }
}

/// `Ok` when every statement of the tokenised script is within [`MAX_DEPTH`].
///
/// # Errors
/// One error per statement over the bound, at the statement's first token.
pub(super) fn check(tokens: &[TokenWithSpan]) -> Result<(), Vec<SqlError>> {
    let mut statements = Statements::default();
    let mut stack = vec![Group::new(Closer::Statement)];
    for t in tokens {
        let token = &t.token;
        if matches!(token, Token::Whitespace(_) | Token::EOF) {
            continue;
        }
        if *token == Token::SemiColon && stack.len() == 1 {
            statements.finish(&mut stack);
            continue;
        }
        statements.start.get_or_insert(pos_of(t.span.start));
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
            // A quoted word is a name, and the tokenizer gives it no keyword.
            Token::Word(w) => match w.keyword {
                Keyword::CASE => {
                    top.run += 1;
                    stack.push(Group::new(Closer::End));
                }
                Keyword::END => close(&mut stack, Closer::End),
                k if CHAINS_QUERIES.contains(&k) => {
                    top.chain += 1;
                    top.in_from = k == Keyword::JOIN;
                    top.end_expression();
                }
                Keyword::FROM => {
                    top.in_from = true;
                    top.end_expression();
                }
                k if ENDS_FROM.contains(&k) => {
                    top.in_from = false;
                    top.end_expression();
                }
                k if STARTS_EXPRESSION.contains(&k) => top.end_expression(),
                k if OPERATOR_WORDS.contains(&k) => top.run += 1,
                _ => {}
            },
            other if is_operator(other) => top.run += 1,
            _ => {}
        }
    }
    statements.finish(&mut stack);
    if statements.errs.is_empty() {
        Ok(())
    } else {
        Err(statements.errs)
    }
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

/// Whether a token (other than a word) joins operands: everything but literals, names,
/// whitespace and the punctuation that groups or separates (parentheses, brackets, braces,
/// commas). An unknown token counts, which can only over-estimate.
pub(crate) fn is_operator(t: &Token) -> bool {
    !matches!(
        t,
        Token::Whitespace(_)
            | Token::EOF
            | Token::Comma
            | Token::LParen
            | Token::RParen
            | Token::LBracket
            | Token::RBracket
            | Token::LBrace
            | Token::RBrace
            | Token::Number(..)
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
