//! Connecting to a running server, and presenting its errors to a person.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
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
    /// API key sent with every call (`authorization: Bearer`), when the server requires one.
    #[arg(long, env = "HASHSIEVE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A connection to the server that sends the API key with every call.
pub type Connection = InterceptedService<Channel, SendKey>;

/// Adds `authorization: Bearer <key>` to each call, when there is a key.
#[derive(Clone)]
pub struct SendKey {
    authorization: Option<MetadataValue<Ascii>>,
}

impl Interceptor for SendKey {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl ServerArgs {
    async fn connection(&self) -> Result<Connection, String> {
        let endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|e| format!("invalid server address {}: {e}", self.server))?;
        let authorization = self
            .api_key
            .as_deref()
            .map(|key| {
                format!("Bearer {}", key.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| "the API key must be printable ASCII".to_string())
            })
            .transpose()?;
        let channel = endpoint.connect().await.map_err(|e| {
            format!(
                "cannot connect to {}: {e} (is `hashsieve serve` running there?)",
                self.server
            )
        })?;
        Ok(InterceptedService::new(channel, SendKey { authorization }))
    }

    pub async fn banks(&self) -> Result<BanksClient<Connection>, String> {
        Ok(BanksClient::new(self.connection().await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub async fn matcher(&self) -> Result<MatcherClient<Connection>, String> {
        Ok(MatcherClient::new(self.connection().await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// `count` clients, each on its own HTTP/2 connection (a load test spreads its calls over
    /// them; one connection would carry them all on one TCP stream).
    pub async fn matchers(&self, count: usize) -> Result<Vec<MatcherClient<Connection>>, String> {
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
