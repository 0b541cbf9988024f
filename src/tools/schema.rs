//! JSON Schema (draft 2020-12) for config tools' arguments and results, with the
//! `jsonschema` crate.
//!
//! Owns compiling a schema once at start (an invalid schema is a configuration error) and
//! turning the first violation into a message that names the JSON pointer and the rule,
//! e.g. `at /url: 5 is not of type "string" (rule: type)`. Schemas never fetch anything:
//! the crate is built without its HTTP and file resolvers, so a `$ref` can only point
//! inside the schema itself.
//!
//! It must not decide what a violation means for a call or a job; callers do.

use crate::json::Object;

/// A compiled schema.
pub struct Schema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

impl Schema {
    /// Compiles `schema` as draft 2020-12 (unless it names another draft in `$schema`),
    /// checking it against its meta-schema.
    pub fn compile(schema: &serde_json::Value) -> Result<Schema, String> {
        jsonschema::draft202012::options()
            .build(schema)
            .map(|validator| Schema { validator })
            .map_err(|e| format!("{e} (at schema {})", pointer(e.schema_path().as_str())))
    }

    /// The first violation of `value`, as `at POINTER: MESSAGE (rule: KEYWORD)`.
    pub fn check(&self, value: &serde_json::Value) -> Result<(), String> {
        // The common case asks only yes or no; the first error is looked for when no.
        if self.validator.is_valid(value) {
            return Ok(());
        }
        match self.validator.iter_errors(value).next() {
            None => Ok(()),
            Some(e) => Err(format!(
                "at {}: {} (rule: {})",
                pointer(e.instance_path().as_str()),
                e,
                e.kind().keyword()
            )),
        }
    }

    /// [`check`](Self::check) of one of our JSON objects.
    pub fn check_object(&self, value: &Object) -> Result<(), String> {
        let v = serde_json::Value::Object(
            value
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_serde()))
                .collect(),
        );
        self.check(&v)
    }
}

fn pointer(p: &str) -> &str {
    if p.is_empty() {
        "/"
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_name_the_pointer_and_the_rule() {
        let s = Schema::compile(&json!({
            "type": "object",
            "required": ["url"],
            "additionalProperties": false,
            "properties": {"url": {"type": "string"}, "n": {"type": "integer", "maximum": 3}}
        }))
        .unwrap();
        assert!(s.check(&json!({"url": "x"})).is_ok());
        let e = s.check(&json!({"url": 5})).unwrap_err();
        assert!(
            e.starts_with("at /url:") && e.ends_with("(rule: type)"),
            "{e}"
        );
        let e = s.check(&json!({"url": "x", "n": 4})).unwrap_err();
        assert!(e.starts_with("at /n:") && e.contains("maximum"), "{e}");
        let e = s.check(&json!({})).unwrap_err();
        assert!(e.starts_with("at /:") && e.contains("required"), "{e}");
        let e = s.check(&json!({"url": "x", "extra": 1})).unwrap_err();
        assert!(e.contains("additionalProperties"), "{e}");
    }

    #[test]
    fn an_invalid_schema_does_not_compile() {
        assert!(Schema::compile(&json!({"type": "no-such-type"})).is_err());
        assert!(Schema::compile(&json!({"minimum": "three"})).is_err());
    }

    #[test]
    fn remote_references_are_not_fetched() {
        let r = Schema::compile(&json!({"$ref": "http://127.0.0.1:1/schema.json"}));
        assert!(r.is_err(), "a remote $ref must not resolve");
    }
}
