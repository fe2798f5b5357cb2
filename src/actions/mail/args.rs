//! The arguments of `mail.send`. Their doc comments are the user documentation
//! (`clerk actions`, the JSON Schema and docs/mail.md all come from here).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

/// Arguments of `mail.send`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    /// The sender, e.g. `"Permits bot <clerk@city.example>"`; default: `mail.from` in clerk.yaml.
    #[serde(default)]
    pub from: Option<String>,
    /// Recipients: a list, or one string with addresses separated by commas.
    /// Every address is checked before anything is sent.
    #[serde(default)]
    pub to: Option<Recipients>,
    /// Copy recipients (a list or a comma-separated string).
    #[serde(default)]
    pub cc: Option<Recipients>,
    /// Blind-copy recipients (a list or a comma-separated string); they get
    /// the message but appear in no header.
    #[serde(default)]
    pub bcc: Option<Recipients>,
    /// Where replies should go (a list or a comma-separated string).
    #[serde(default)]
    pub reply_to: Option<Recipients>,
    /// The subject line (any language; encoded as the mail standards require).
    pub subject: Text,
    /// The plain-text body.
    #[serde(default)]
    pub text: Option<Text>,
    /// The HTML body. With `text` too, the message carries both
    /// (multipart/alternative) and the reader's mail program picks one.
    #[serde(default)]
    pub html: Option<Text>,
    /// Files to attach, relative to the workspace: a list, one path, or a
    /// template giving a list (`"{{ run.artifacts }}"` attaches the run's
    /// screenshots and saved pages). The content type follows the extension.
    /// A missing file fails the step before anything is sent.
    #[serde(default)]
    pub attachments: Option<Attachments>,
    /// Extra headers, e.g. `{ X-Case-Batch: "2025-W05" }`. Headers clerk sets
    /// itself (From, To, Subject, Content-Type, ...) cannot be given here.
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
}

/// Text, also written as a number or a boolean: `subject: "{{ rows | length }}"`
/// renders to a number, and a mail subject is text either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("text")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Text {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// Addresses: one string (several separated by commas) or a list of strings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recipients(pub Vec<String>);

impl<'de> Deserialize<'de> for Recipients {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Recipients;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an address, addresses separated by commas, or a list of addresses")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Recipients, E> {
                Ok(Recipients(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Recipients, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(Recipients(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Recipients {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Recipients".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "array"], "items": { "type": "string" } })
    }
}

/// A list of attachments, or one.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Attachments {
    // The list comes first: serde would otherwise read a list of two or three
    // paths as one `{ path, name, content_type }` (structs accept sequences).
    Many(Vec<AttachmentArg>),
    One(AttachmentArg),
}

impl Attachments {
    pub fn specs(&self) -> Vec<AttachmentSpec> {
        match self {
            Attachments::Many(v) => v.iter().map(AttachmentArg::spec).collect(),
            Attachments::One(a) => vec![a.spec()],
        }
    }
}

/// One attachment: a path, or a path with the name the recipient sees.
#[derive(Debug, Clone, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum AttachmentArg {
    /// A path relative to the workspace.
    Path(String),
    /// A path plus presentation.
    Detailed(AttachmentSpec),
}

/// An attachment with explicit presentation.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttachmentSpec {
    /// The file, relative to the workspace.
    pub path: String,
    /// The file name the recipient sees (default: the file's own name).
    #[serde(default)]
    pub name: Option<String>,
    /// The MIME type (default: from the extension, e.g. `.xlsx`, `.pdf`, `.csv`).
    #[serde(default)]
    pub content_type: Option<String>,
}

impl<'de> Deserialize<'de> for AttachmentArg {
    /// A string or a map, nothing else: a derived untagged enum would also
    /// read a list as `{ path, name, content_type }`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AttachmentArg;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a file path or a map with `path` (and `name`, `content_type`)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AttachmentArg, E> {
                Ok(AttachmentArg::Path(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AttachmentArg, A::Error> {
                AttachmentSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(AttachmentArg::Detailed)
            }
        }
        d.deserialize_any(V)
    }
}

impl AttachmentArg {
    pub fn spec(&self) -> AttachmentSpec {
        match self {
            AttachmentArg::Path(p) => AttachmentSpec {
                path: p.clone(),
                name: None,
                content_type: None,
            },
            AttachmentArg::Detailed(s) => s.clone(),
        }
    }
}
