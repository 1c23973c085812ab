//! Connecting to a running server, and presenting its errors to a person.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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
    /// For an `https://` server: trust this CA (PEM) besides the system's roots.
    #[arg(long, env = "HASHSIEVE_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// For a server that requires client certificates: this certificate (PEM) …
    #[arg(long, env = "HASHSIEVE_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// … and its key (PEM).
    #[arg(long, env = "HASHSIEVE_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
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
    /// TLS settings for an `https://` server.
    fn tls(&self) -> Result<ClientTlsConfig, String> {
        let mut config = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &self.ca_cert {
            config = config.ca_certificate(Certificate::from_pem(read_file(path)?));
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            config = config.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
        }
        Ok(config)
    }

    async fn connection(&self) -> Result<Connection, String> {
        let mut endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|e| format!("invalid server address {}: {e}", self.server))?;
        if self.server.starts_with("https://") {
            endpoint = endpoint
                .tls_config(self.tls()?)
                .map_err(|e| format!("TLS settings for {}: {e}", self.server))?;
        }
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
                "cannot connect to {}: {} (is `hashsieve serve` running there?)",
                self.server,
                super::error_chain(&e)
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
