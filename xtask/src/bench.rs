//! Collecting the criterion benchmark's medians into target/bench/results.json, next to the
//! figures the bench binaries write there.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// Add `"userspace"`: one entry per criterion benchmark of the `userspace` group, its median
/// ns per query.
pub fn record_criterion(root: &Path) -> Result<()> {
    let dir = root.join("target/criterion/userspace");
    let mut found = Vec::new();
    collect(&dir, &mut found)?;
    found.sort_by(|a, b| {
        a["names"].as_u64().cmp(&b["names"].as_u64()).then(a["query"].as_str().cmp(&b["query"].as_str()))
    });
    anyhow::ensure!(!found.is_empty(), "no criterion results under {}", dir.display());
    let out = root.join("target/bench/results.json");
    // The bench binaries wrote this file first; a file that is there but unreadable is an error,
    // not something to replace with the criterion figures alone.
    let mut doc: Value = match std::fs::read_to_string(&out) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    doc["userspace"] = Value::Array(found);
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", out.display()))
}

/// Every `new/` result below `dir`: criterion keeps a benchmark's latest run there.
fn collect(dir: &Path, found: &mut Vec<Value>) -> Result<()> {
    let new = dir.join("new");
    if new.join("estimates.json").is_file() {
        let read = |f: &str| -> Result<Value> {
            let p = new.join(f);
            Ok(serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)?)
        };
        let (id, est) = (read("benchmark.json")?, read("estimates.json")?);
        found.push(json!({
            "query": id["function_id"],
            "names": id["value_str"].as_str().and_then(|v| v.parse::<u64>().ok()),
            "median_ns": est["median"]["point_estimate"],
            "statistic": "criterion median",
        }));
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        if e.path().is_dir() {
            collect(&e.path(), found)?;
        }
    }
    Ok(())
}
