//! `spillway ctl`: a command-line client of the control API.

use clap::{Args, Subcommand};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Base URL of the control API.
    #[arg(long, env = "SPILLWAY_API", default_value = "http://127.0.0.1:8053")]
    pub api: String,
    /// Bearer token.
    #[arg(long, env = "SPILLWAY_TOKEN", hide_env_values = true)]
    pub token: String,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Customers and the fraction in force.
    #[command(subcommand)]
    Customers(CustomersCommand),
}

#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// List all customers.
    List,
    /// Show one customer.
    Get { id: String },
    /// Override a customer's fraction (manual mode), in the data plane at once.
    SetFraction { id: String, fraction: f64 },
    /// Hand the fraction back to the control plane (auto mode).
    Auto { id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
}

pub async fn run(args: CtlArgs) -> Result<Value, CtlError> {
    let (method, path, body) = match &args.command {
        CtlCommand::Customers(CustomersCommand::List) => (Method::GET, "/v1/customers".to_owned(), None),
        CtlCommand::Customers(CustomersCommand::Get { id }) => (Method::GET, format!("/v1/customers/{id}"), None),
        CtlCommand::Customers(CustomersCommand::SetFraction { id, fraction }) => {
            (Method::PUT, format!("/v1/customers/{id}/fraction"), Some(json!({ "fraction": fraction })))
        }
        CtlCommand::Customers(CustomersCommand::Auto { id }) => {
            (Method::PUT, format!("/v1/customers/{id}/fraction"), Some(json!({ "mode": "auto" })))
        }
    };
    let url = format!("{}{}", args.api.trim_end_matches('/'), path);
    let mut req = Client::new().request(method, &url).bearer_auth(&args.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let http = |source| CtlError::Http { url: url.clone(), source };
    let resp = req.send().await.map_err(http)?;
    let status = resp.status();
    let value: Value = resp.json().await.map_err(http)?;
    if !status.is_success() {
        let message = value.get("error").and_then(Value::as_str).unwrap_or("(no message)").to_owned();
        return Err(CtlError::Api { status, message });
    }
    Ok(value)
}
