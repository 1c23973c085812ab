//! Connecting to a running server, and presenting its errors to a person.

use tonic::transport::{Channel, Endpoint};

use crate::proto::banks_client::BanksClient;
use crate::proto::matcher_client::MatcherClient;

/// Largest message a client sends or accepts (images up to the server's default limit).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address of the hashsieve server.
    #[arg(long, env = "HASHSIEVE_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
}

impl ServerArgs {
    async fn channel(&self) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|e| format!("invalid server address {}: {e}", self.server))?;
        endpoint.connect().await.map_err(|e| {
            format!(
                "cannot connect to {}: {e} (is `hashsieve serve` running there?)",
                self.server
            )
        })
    }

    pub async fn banks(&self) -> Result<BanksClient<Channel>, String> {
        Ok(BanksClient::new(self.channel().await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub async fn matcher(&self) -> Result<MatcherClient<Channel>, String> {
        Ok(MatcherClient::new(self.channel().await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// `count` clients, each on its own HTTP/2 connection (a load test spreads its calls over
    /// them; one connection would carry them all on one TCP stream).
    pub async fn matchers(&self, count: usize) -> Result<Vec<MatcherClient<Channel>>, String> {
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            clients.push(self.matcher().await?);
        }
        Ok(clients)
    }
}

/// A server error as a person reads it: the status code and the server's message.
pub fn describe(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Reads an input file, naming it in the error.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A wire timestamp as RFC 3339 (`2026-11-22T04:55:00Z`), through protobuf's JSON mapping.
pub fn rfc3339(timestamp: Option<&pbjson_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
