//! Argument types shared by several actions.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

/// A duration written as `500ms`, `2s`, `1m`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationArg(pub Duration);

impl<'de> Deserialize<'de> for DurationArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a duration like `2s` or `500ms`"))?
        {
            Raw::Num(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        crate::playbook::parse_duration(&text)
            .map(DurationArg)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DurationArg {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: `500ms`, `2s`, `10m`, `1h30m`, or a number of seconds.",
            "anyOf": [
                { "type": "string", "pattern": "^[0-9.]+(ms|s|m|h|d)?([0-9.]+(ms|s|m|h|d))*$" },
                { "type": "number", "minimum": 0 }
            ]
        })
    }
}

/// One value or a list of values (`to: a@x` or `to: [a@x, b@x]`).
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}
