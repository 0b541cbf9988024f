//! Argument checking shared by tools: exact field sets and typed reads with
//! errors that name the field, so every tool rejects bad input the same way.

use crate::envelope::CallError;
use crate::json::{Json, Object};

/// Reads fields of an `args` object, rejecting any field not declared.
pub struct ArgReader<'a> {
    args: &'a Object,
}

fn invalid(msg: String) -> CallError {
    CallError::InvalidArgs(msg)
}

impl<'a> ArgReader<'a> {
    /// Fails if `args` has a field outside `allowed`.
    pub fn new(args: &'a Object, allowed: &[&str]) -> Result<Self, CallError> {
        for k in args.keys() {
            if !allowed.contains(&k) {
                return Err(invalid(format!(
                    "unexpected field {k:?} (allowed: {})",
                    allowed.join(", ")
                )));
            }
        }
        Ok(ArgReader { args })
    }

    pub fn get(&self, field: &str) -> Option<&'a Json> {
        self.args.get(field)
    }

    pub fn required(&self, field: &str) -> Result<&'a Json, CallError> {
        self.args
            .get(field)
            .ok_or_else(|| invalid(format!("field {field:?} is required")))
    }

    pub fn string(&self, field: &str, max_len: usize) -> Result<&'a str, CallError> {
        match self.required(field)? {
            Json::Str(s) if s.len() <= max_len => Ok(s),
            Json::Str(_) => Err(invalid(format!(
                "field {field:?} is longer than {max_len} bytes"
            ))),
            other => Err(invalid(format!(
                "field {field:?} must be a string, got {}",
                other.type_name()
            ))),
        }
    }

    /// An integer in `min..=max`. Floats with an integral value are refused, as JSON integers are expected.
    pub fn int_in(&self, field: &str, min: i64, max: i64) -> Result<i64, CallError> {
        match self.required(field)? {
            Json::Int(i) if (min..=max).contains(i) => Ok(*i),
            Json::Int(_) | Json::BigInt(_) => Err(invalid(format!(
                "field {field:?} must be between {min} and {max}"
            ))),
            other => Err(invalid(format!(
                "field {field:?} must be an integer, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn object_or_empty(&self, field: &str) -> Result<Object, CallError> {
        match self.get(field) {
            None => Ok(Object::new()),
            Some(Json::Object(o)) => Ok(o.clone()),
            Some(other) => Err(invalid(format!(
                "field {field:?} must be an object, got {}",
                other.type_name()
            ))),
        }
    }
}
