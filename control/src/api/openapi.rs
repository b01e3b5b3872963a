//! Checking requests and responses against `openapi.json`: the tests hold the API to its
//! document. A small validator for the subset the document uses: `$ref`, `allOf`, `anyOf`,
//! object `properties`/`required`, arrays, `enum`, `minimum`/`maximum`, the `ipv4` and `ipv6`
//! formats, `nullable` and the JSON types.

use serde_json::Value;

/// The document, parsed.
pub fn document() -> Value {
    serde_json::from_str(super::OPENAPI).expect("openapi.json is valid JSON (checked by a test)")
}

/// The documented path template matching a concrete path under /v1 (e.g. `/orders/7`
/// matches `/orders/{id}`), and the operation for `method`.
pub fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<(&'a str, &'a Value)> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let paths = doc.get("paths")?.as_object()?;
    paths.iter().find_map(|(template, item)| {
        let t: Vec<&str> = template.trim_matches('/').split('/').collect();
        let fits = t.len() == segs.len() && t.iter().zip(&segs).all(|(a, b)| a.starts_with('{') || a == b);
        if !fits {
            return None;
        }
        Some((template.as_str(), item.get(method.to_lowercase())?))
    })
}

/// Check a response: its status is documented for the operation, and a JSON body matches
/// the documented schema.
pub fn check_response(doc: &Value, method: &str, path: &str, status: u16, body: &Value) -> Result<(), String> {
    let (template, op) = operation(doc, method, path).ok_or_else(|| format!("{method} {path} is not documented"))?;
    let resp = op
        .get("responses")
        .and_then(|r| r.get(status.to_string()))
        .ok_or_else(|| format!("{method} {template}: status {status} is not documented"))?;
    match resp.pointer("/content/application~1json/schema") {
        Some(schema) => validate(doc, schema, body, "$").map_err(|e| format!("{method} {template} {status}: {e}")),
        None => Ok(()),
    }
}

/// Check a request body against the documented schema.
pub fn check_request(doc: &Value, method: &str, path: &str, body: &Value) -> Result<(), String> {
    let (template, op) = operation(doc, method, path).ok_or_else(|| format!("{method} {path} is not documented"))?;
    let schema = op
        .pointer("/requestBody/content/application~1json/schema")
        .ok_or_else(|| format!("{method} {template} documents no request body"))?;
    validate(doc, schema, body, "$")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> Result<&'a Value, String> {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').ok_or_else(|| format!("unsupported $ref {r}"))?;
            doc.pointer(pointer).ok_or_else(|| format!("dangling $ref {r}"))
        }
        None => Ok(schema),
    }
}

pub fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema)?;
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        return all.iter().try_for_each(|s| validate(doc, s, value, at));
    }
    if value.is_null() {
        return if schema.get("nullable") == Some(&Value::Bool(true)) {
            Ok(())
        } else {
            Err(format!("{at} is null, which the schema does not allow"))
        };
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let fits = match ty {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return Err(format!("{at}: unsupported type {other}")),
    };
    if !fits {
        return Err(format!("{at} should be {}, got {value}", ty.unwrap_or("?")));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at} = {value} is not one of {allowed:?}"));
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && value.as_f64().is_some_and(|v| v < min)
    {
        return Err(format!("{at} = {value} is below the minimum {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && value.as_f64().is_some_and(|v| v > max)
    {
        return Err(format!("{at} = {value} is above the maximum {max}"));
    }
    if let (Some(format), Some(text)) = (schema.get("format").and_then(Value::as_str), value.as_str()) {
        let fits = match format {
            "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
            "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
            _ => true,
        };
        if !fits {
            return Err(format!("{at} = {value} is not {format}"));
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(|s| validate(doc, s, value, at).is_ok())
    {
        return Err(format!("{at} = {value} fits none of {any:?}"));
    }
    if let Some(obj) = value.as_object() {
        for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                return Err(format!("{at}.{key} is required but missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(doc, s, v, &format!("{at}.{k}"))?,
                None => {
                    if let Some(extra) = schema.get("additionalProperties").filter(|e| e.is_object()) {
                        validate(doc, extra, v, &format!("{at}.{k}"))?;
                    } else if props.is_some() && schema.get("allOf").is_none() {
                        // Undocumented fields are allowed by allOf parts only.
                        if !is_all_of_part(doc, schema) {
                            return Err(format!("{at}.{k} is not documented"));
                        }
                    }
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Schemas used inside an `allOf` see only part of the object; they do not reject the rest.
fn is_all_of_part(doc: &Value, schema: &Value) -> bool {
    let Some(schemas) = doc.pointer("/components/schemas").and_then(Value::as_object) else { return false };
    schemas
        .values()
        .filter_map(|s| s.get("allOf")?.as_array())
        .flatten()
        .any(|part| resolve(doc, part).is_ok_and(|p| std::ptr::eq(p, schema)))
}
