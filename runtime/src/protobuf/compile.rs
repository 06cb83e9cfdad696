//! `.proto` text to descriptors, and the `.proto` a sink registers.

use datafusion::arrow::datatypes::{DataType, Schema};
use prost_reflect::{FileDescriptor, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

/// The name the registry's text is compiled under (imports of Google's well-known types
/// resolve beside it).
const FILE: &str = "registered.proto";

/// Serves the one file the registry gave.
struct Registered(String);

impl FileResolver for Registered {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == FILE {
            File::from_source(name, &self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Blocks within one another a registered `.proto` may have: braces (`message`, `enum`,
/// `oneof`, option values), brackets, parentheses and angle brackets (`map<...>`) alike. The compiler recurses once per level without a bound of its
/// own, so a registered file nested a few thousand levels deep would overflow the source
/// task's stack and abort the process; no schema written by a person comes near.
pub const MAX_BLOCK_NESTING: usize = 100;

/// `Err` when `text` nests blocks deeper than [`MAX_BLOCK_NESTING`]; braces in strings and
/// comments are not blocks.
fn check_nesting(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b'{' | b'[' | b'(' | b'<' => {
                depth += 1;
                if depth > MAX_BLOCK_NESTING {
                    return Err(format!(
                        "the schema nests blocks more than {MAX_BLOCK_NESTING} levels deep; it is not read"
                    ));
                }
            }
            b'}' | b']' | b')' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Compiles `.proto` text (which may import Google's well-known types).
///
/// # Errors
/// Blocks nested too deep ([`MAX_BLOCK_NESTING`]); the compiler's message: a syntax error, an
/// unknown type, an import of another file.
pub fn proto_file(text: &str) -> Result<FileDescriptor, String> {
    check_nesting(text)?;
    let mut resolver = ChainFileResolver::new();
    resolver.add(GoogleFileResolver::new());
    resolver.add(Registered(text.to_string()));
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file(FILE).map_err(|e| e.to_string())?;
    compiler
        .descriptor_pool()
        .get_file_by_name(FILE)
        .ok_or_else(|| "the compiled file is missing".to_string())
}

/// The message at index path `path` (top-level index, then nested ones).
///
/// # Errors
/// A path the file does not have.
pub fn message_at(file: &FileDescriptor, path: &[usize]) -> Result<MessageDescriptor, String> {
    let missing = || format!("the schema has no message at index path {path:?}");
    let (first, rest) = path.split_first().ok_or_else(missing)?;
    let mut m = file.messages().nth(*first).ok_or_else(missing)?;
    for i in rest {
        let child = m.child_messages().nth(*i).ok_or_else(missing)?;
        m = child;
    }
    Ok(m)
}

/// The proto3 type a sink column is written as.
pub(super) fn write_type(t: &DataType) -> Option<&'static str> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Boolean => "bool",
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            "int32"
        }
        DataType::Int64 | DataType::UInt32 => "int64",
        DataType::UInt64 => "uint64",
        DataType::Float16 | DataType::Float32 => "float",
        DataType::Float64 => "double",
        DataType::Timestamp(_, _) => "google.protobuf.Timestamp",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytes",
        _ => return None,
    })
}

/// The `.proto` text (proto3, package `weir`, one message `name`) of a sink's columns:
/// nullable columns are `optional`, so a null stays distinguishable from zero; timestamps
/// are `google.protobuf.Timestamp`.
///
/// # Errors
/// A column whose name is not a protobuf field name, or whose type has no protobuf writing.
pub fn sink_proto(columns: &Schema, name: &str) -> Result<String, String> {
    let mut fields = String::new();
    let mut timestamps = false;
    for (i, f) in columns.fields().iter().enumerate() {
        let ok_name = f
            .name()
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && f.name()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_name {
            return Err(format!(
                "column `{}` is not a valid protobuf field name; name it with AS",
                f.name()
            ));
        }
        let Some(t) = write_type(f.data_type()) else {
            return Err(format!(
                "column `{}` has type {}, which has no protobuf writing; cast it",
                f.name(),
                f.data_type()
            ));
        };
        timestamps |= t.starts_with("google.");
        let label = if f.is_nullable() { "optional " } else { "" };
        fields.push_str(&format!("  {label}{t} {} = {};\n", f.name(), i + 1));
    }
    let import = if timestamps {
        "import \"google/protobuf/timestamp.proto\";\n\n"
    } else {
        ""
    };
    Ok(format!(
        "syntax = \"proto3\";\n\npackage weir;\n\n{import}message {name} {{\n{fields}}}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::{MAX_BLOCK_NESTING, proto_file};

    fn nested(levels: usize) -> String {
        let mut t = String::from("syntax = \"proto3\";\n");
        for i in 0..levels {
            t.push_str(&format!("message M{i} {{ int64 v{i} = 1;\n"));
        }
        t.push_str(&"}".repeat(levels));
        t
    }

    /// On a task's stack (2 MiB), a file nested 20 000 messages deep aborted the process
    /// inside the compiler; it is now an error, and a file at the bound compiles.
    #[test]
    fn a_registered_file_nested_deeper_than_the_bound_is_refused_on_a_small_stack() {
        let got = weir_testkit::on_a_task_stack(|| {
            (
                proto_file(&nested(20_000)).map(|_| ()),
                proto_file(&nested(MAX_BLOCK_NESTING)).map(|_| ()),
            )
        });
        let e = got.0.expect_err("refused");
        assert!(e.contains("more than 100 levels"), "{e}");
        got.1.expect("the bound itself compiles");
    }

    /// Braces in strings and comments are text, not blocks.
    #[test]
    fn braces_in_strings_and_comments_are_not_nesting() {
        let braces = "{".repeat(MAX_BLOCK_NESTING * 2);
        let text = format!(
            "syntax = \"proto3\";\n// {braces}\n/* {braces} */\nmessage M {{ string s = 1 [json_name = \"{braces}\"]; }}\n"
        );
        proto_file(&text).expect("compiles");
    }
}
