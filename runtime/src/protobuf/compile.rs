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

/// Compiles `.proto` text (which may import Google's well-known types).
///
/// # Errors
/// The compiler's message: a syntax error, an unknown type, an import of another file.
pub fn proto_file(text: &str) -> Result<FileDescriptor, String> {
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
