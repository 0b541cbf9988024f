//! `batch_sum {numbers: [float]}` → `{count, total}`, summed left to right as CPython 3.11's `sum` does.

use serde_json::json;

use super::{ArgReader, CallCtx, Reply, SyncTool};
use crate::envelope::CallError;
use crate::json::{Json, Object};
use crate::store::BoxFuture;

pub struct BatchSum {
    pub max: usize,
}

impl BatchSum {
    fn sum(&self, args: &Object) -> Result<Object, CallError> {
        let r = ArgReader::new(args, &["numbers"])?;
        let Json::Array(items) = r.required("numbers")? else {
            return Err(CallError::InvalidArgs(format!(
                "field \"numbers\" must be an array of numbers, got {}",
                r.required("numbers")?.type_name()
            )));
        };
        if items.is_empty() {
            return Err(CallError::InvalidArgs(
                "field \"numbers\" must have at least 1 item".into(),
            ));
        }
        if items.len() > self.max {
            return Err(CallError::InvalidArgs(format!(
                "field \"numbers\" has {} items; at most {} are allowed",
                items.len(),
                self.max
            )));
        }
        let mut total = 0.0f64;
        for (i, item) in items.iter().enumerate() {
            let x = match item {
                Json::Int(n) => *n as f64,
                Json::BigInt(s) => s.parse::<f64>().unwrap_or(f64::INFINITY),
                Json::Float(f) => *f,
                other => {
                    return Err(CallError::InvalidArgs(format!(
                        "field \"numbers[{i}]\" must be a number, got {}",
                        other.type_name()
                    )))
                }
            };
            if !x.is_finite() {
                return Err(CallError::InvalidArgs(format!(
                    "field \"numbers[{i}]\" must be a finite number"
                )));
            }
            total += x;
        }
        if !total.is_finite() {
            return Err(CallError::InvalidArgs(
                "field \"numbers\" sums beyond the float range".into(),
            ));
        }
        Ok(Object::from_pairs([
            ("count".to_string(), Json::Int(items.len() as i64)),
            ("total".to_string(), Json::Float(total)),
        ]))
    }
}

impl SyncTool for BatchSum {
    fn name(&self) -> &'static str {
        "batch_sum"
    }
    fn description(&self) -> &'static str {
        "Sums a list of numbers; returns their count and total."
    }
    fn input_schema(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {"numbers": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": self.max}},
            "required": ["numbers"],
            "additionalProperties": false
        })
    }
    fn call<'a>(
        &'a self,
        _ctx: CallCtx<'a>,
        args: &'a Object,
    ) -> BoxFuture<'a, Result<Reply, CallError>> {
        let r = self.sum(args).map(Reply::ok);
        Box::pin(std::future::ready(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> Result<String, CallError> {
        let Json::Object(o) = crate::json::parse(body.as_bytes()).unwrap() else {
            panic!()
        };
        BatchSum { max: 3 }
            .sum(&o)
            .map(|r| Json::Object(r).to_canonical())
    }

    #[test]
    fn sums_like_python() {
        assert_eq!(
            run(r#"{"numbers":[1,2,3]}"#).unwrap(),
            r#"{"count":3,"total":6.0}"#
        );
        assert_eq!(
            run(r#"{"numbers":[0.1,0.2]}"#).unwrap(),
            r#"{"count":2,"total":0.30000000000000004}"#
        );
    }

    #[test]
    fn names_the_bad_field() {
        for (body, needle) in [
            (r#"{"numbers":[]}"#, "at least 1"),
            (r#"{"numbers":[1,"x"]}"#, "numbers[1]"),
            (r#"{"numbers":[NaN]}"#, "finite"),
            (r#"{"numbers":[1,2,3,4]}"#, "at most 3"),
            (r#"{"numbers":[1],"extra":1}"#, "\"extra\""),
            (r#"{}"#, "\"numbers\" is required"),
            (r#"{"numbers":5}"#, "must be an array"),
        ] {
            let e = run(body).unwrap_err();
            assert_eq!(e.code(), "invalid_args");
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
    }
}
