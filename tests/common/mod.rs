//! Shared by the integration tests: a real server on 127.0.0.1:0 over a temporary store.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hashsieve::matcher::{Matcher, MatcherConfig};
use hashsieve::proto::banks_client::BanksClient;
use hashsieve::proto::matcher_client::MatcherClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct TestServer {
    pub address: SocketAddr,
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    pub async fn start_in(data_dir: tempfile::TempDir) -> TestServer {
        let matcher = Matcher::open(MatcherConfig::new(data_dir.path())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            hashsieve::grpc::serve(listener, Arc::new(matcher), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            address,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn banks(&self) -> BanksClient<Channel> {
        BanksClient::connect(self.url())
            .await
            .unwrap()
            .max_decoding_message_size(64 << 20)
    }

    pub async fn matcher(&self) -> MatcherClient<Channel> {
        MatcherClient::connect(self.url())
            .await
            .unwrap()
            .max_encoding_message_size(64 << 20)
    }

    /// Stops the server gracefully and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }
}

pub fn testdata(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(path)
}

pub fn read_testdata(path: &str) -> Vec<u8> {
    std::fs::read(testdata(path)).unwrap()
}
