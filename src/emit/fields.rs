//! The names of the values a series carries, in one place: line-protocol fields, JSON keys,
//! and (prefixed) OTLP and Prometheus metric names are all derived from this table.

use crate::model::Usage;

/// How a field's value is typed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Count,
    Ratio,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Only batch inference reports it.
    pub batch_only: bool,
}

pub const FIELDS: &[Field] = &[
    Field {
        name: "total_tokens",
        kind: Kind::Count,
        batch_only: false,
    },
    Field {
        name: "prompt_tokens",
        kind: Kind::Count,
        batch_only: false,
    },
    Field {
        name: "completion_tokens",
        kind: Kind::Count,
        batch_only: false,
    },
    Field {
        name: "requests",
        kind: Kind::Count,
        batch_only: false,
    },
    Field {
        name: "errors",
        kind: Kind::Count,
        batch_only: false,
    },
    Field {
        name: "error_ratio",
        kind: Kind::Ratio,
        batch_only: false,
    },
    Field {
        name: "completed_tasks",
        kind: Kind::Count,
        batch_only: true,
    },
    Field {
        name: "infer_count",
        kind: Kind::Count,
        batch_only: true,
    },
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

/// The value of `field` in `u`.
pub fn value(u: &Usage, field: &Field) -> Value {
    match field.name {
        "total_tokens" => Value::Int(u.total_tokens),
        "prompt_tokens" => Value::Int(u.prompt_tokens),
        "completion_tokens" => Value::Int(u.completion_tokens),
        "requests" => Value::Int(u.requests),
        "errors" => Value::Int(u.errors),
        "completed_tasks" => Value::Int(u.completed_tasks),
        "infer_count" => Value::Int(u.infer_count),
        _ => Value::Float(u.error_ratio()),
    }
}

/// The fields a series of this inference type carries, with values.
pub fn values(u: &Usage, batch: bool) -> impl Iterator<Item = (&'static Field, Value)> + '_ {
    FIELDS
        .iter()
        .filter(move |f| batch || !f.batch_only)
        .map(move |f| (f, value(u, f)))
}
